"""The Default constructor: MMEngine's paramwise options, globbed rules, freezing, sharing, merged groups."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from trainer.errors import RecipeError
from trainer.optim import build_optimizer
from trainer.optim import paramwise as paramwise_module

SGD = {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
ADAMW = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}


def settings(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, tuple[float, float]]:
    """{parameter name: (lr, weight_decay)} for every parameter the optimizer holds."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}


@pytest.fixture(scope="module")
def convnext():
    return timm.create_model("test_convnext", pretrained=False)


@pytest.fixture(scope="module")
def vit():
    return timm.create_model("test_vit", pretrained=False)


@pytest.fixture(scope="module")
def resnet():
    return timm.create_model("test_resnet", pretrained=False)


def test_empty_paramwise_gives_one_group_with_the_recipe_values(vit):
    optimizer = build_optimizer(vit, ADAMW, {})
    (group,) = optimizer.param_groups
    assert group["name"] == "default" and group["lr"] == 1e-3 and group["weight_decay"] == 0.05
    assert group["param_names"] == [n for n, _ in vit.named_parameters()]
    assert group["betas"] == (0.9, 0.999)  # optimizer defaults are filled in every group


def test_group_carries_multiplied_values_defaults_and_metadata(resnet):
    optimizer = build_optimizer(resnet, SGD, {"bias_lr_mult": 2.0, "bias_decay_mult": 0.0})
    bias_group = next(g for g in optimizer.param_groups if "fc.bias" in g["param_names"])
    assert bias_group["lr"] == 0.2 and bias_group["weight_decay"] == 0.0
    assert bias_group["lr_mult"] == 2.0 and bias_group["decay_mult"] == 0.0
    assert bias_group["name"] == "lr_mult=2.0,no_decay"
    assert bias_group["momentum"] == 0.9 and bias_group["nesterov"] is False


def test_seed_example_sgd_norm_decay_mult_zero(resnet):
    optimizer = build_optimizer(
        resnet, {"type": "SGD", "lr": 0.8, "weight_decay": 1e-4}, {"norm_decay_mult": 0.0}
    )
    got = settings(resnet, optimizer)
    norms = {n for n, m in resnet.named_modules() if isinstance(m, nn.BatchNorm2d)}
    for name, (lr, wd) in got.items():
        assert lr == 0.8
        assert wd == (0.0 if name.rpartition(".")[0] in norms else 1e-4), name
    assert len(optimizer.param_groups) == 2


def test_seed_example_backbone_layer0_backbone_head_on_resnet_names(resnet):
    # MMPretrain: 'backbone.layer0' lr 0 decay 0, 'backbone' lr_mult 1, 'head' lr_mult 0.1
    rules = {
        "conv1.*": {"lr_mult": 0.0, "decay_mult": 0.0},
        "bn1.*": {"lr_mult": 0.0, "decay_mult": 0.0},
        "layer*": {"lr_mult": 1.0},
        "fc.*": {"lr_mult": 0.1},
    }
    got = settings(
        resnet, build_optimizer(resnet, {"type": "SGD", "lr": 0.01, "weight_decay": 1e-4}, {"rules": rules})
    )
    assert got["conv1.0.weight"] == got["bn1.weight"] == (0.0, 0.0)
    assert got["layer1.0.conv1.weight"] == got["layer4.0.bn2.bias"] == (0.01, 1e-4)
    assert got["fc.weight"] == got["fc.bias"] == (0.01 * 0.1, 1e-4)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        # test_convnext: stem.1 is a LayerNorm2d, conv_dw a depth-wise Conv2d, gamma a 1-D layer scale.
        (
            "bias_lr_mult",
            {"stem.0.bias": (0.2, 1e-4), "stem.1.bias": (0.1, 1e-4), "stages.0.blocks.0.gamma": (0.1, 1e-4)},
        ),
        (
            "bias_decay_mult",
            {"stem.0.bias": (0.1, 2e-4), "stem.1.bias": (0.1, 2e-4), "stem.1.weight": (0.1, 1e-4)},
        ),
        (
            "norm_decay_mult",
            {"stem.1.weight": (0.1, 2e-4), "stem.1.bias": (0.1, 2e-4), "stem.0.bias": (0.1, 1e-4)},
        ),
        (
            "flat_decay_mult",
            {
                "stages.0.blocks.0.gamma": (0.1, 2e-4),
                "stem.1.weight": (0.1, 2e-4),
                "stem.0.weight": (0.1, 1e-4),
            },
        ),
        (
            "dwconv_decay_mult",
            {
                "stages.0.blocks.0.conv_dw.weight": (0.1, 2e-4),
                "stages.0.blocks.0.conv_dw.bias": (0.1, 2e-4),  # no bias_decay_mult: dwconv applies
                "stages.0.blocks.0.mlp.fc1.weight": (0.1, 1e-4),
            },
        ),
    ],
)
def test_each_type_multiplier_alone(convnext, option, expected):
    got = settings(convnext, build_optimizer(convnext, SGD, {option: 2.0}))
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=0, abs=0), name


def test_all_type_multipliers_together_follow_mmengine_chain(convnext):
    paramwise = {
        "bias_lr_mult": 2.0,
        "bias_decay_mult": 0.5,
        "norm_decay_mult": 0.0,
        "dwconv_decay_mult": 0.25,
        "flat_decay_mult": 0.125,
    }
    got = settings(convnext, build_optimizer(convnext, SGD, paramwise))
    assert got["stem.1.bias"] == (0.1, 0.0)  # norm beats bias; no bias lr on norm biases
    assert got["stages.0.blocks.0.conv_dw.bias"] == (0.2, 0.5e-4)  # bias beats dwconv
    assert got["stages.0.blocks.0.conv_dw.weight"] == (0.1, 0.25e-4)
    assert got["stages.0.blocks.0.gamma"] == (0.1, 0.125e-4)
    assert got["stages.0.blocks.0.mlp.fc1.weight"] == (0.1, 1e-4)


def test_rule_replaces_type_multipliers_and_restores_full_decay(convnext):
    # MMEngine issue #846: a rule with only lr_mult gives norm params base_wd × 1.
    paramwise = {"norm_decay_mult": 0.0, "bias_lr_mult": 2.0, "rules": {"stem.*": {"lr_mult": 0.5}}}
    got = settings(convnext, build_optimizer(convnext, SGD, paramwise))
    assert got["stem.1.weight"] == (0.05, 1e-4) and got["stem.0.bias"] == (0.05, 1e-4)
    assert got["stages.0.blocks.0.norm.weight"] == (0.1, 0.0)


def test_longest_rule_wins_and_equal_lengths_go_alphabetically(vit):
    rules = {
        "blocks.1.*": {"lr_mult": 0.5},
        "blocks.1.attn.*": {"lr_mult": 0.25},
        "*.bias": {"decay_mult": 0.0},
        "head.*": {"lr_mult": 10.0},
    }
    optimizer = build_optimizer(vit, ADAMW, {"rules": rules})
    got = settings(vit, optimizer)
    assert got["blocks.1.attn.qkv.bias"] == (0.25e-3, 0.05)  # longest pattern, although '*.bias' matches too
    assert got["blocks.1.norm1.bias"] == (0.5e-3, 0.05)
    assert got["blocks.0.norm1.bias"] == (1e-3, 0.0)
    assert got["head.bias"] == (1e-3, 0.0)  # '*.bias' and 'head.*' tie at 6; '*' sorts first
    assert got["head.weight"] == (1e-2, 0.05)
    report = optimizer.paramwise_report
    assert report["head.bias"]["rule"] == "*.bias" and report["blocks.0.attn.qkv.weight"]["rule"] is None


def test_globs_match_whole_names_not_substrings(vit):
    got = settings(vit, build_optimizer(vit, ADAMW, {"rules": {"norm.*": {"decay_mult": 0.0}}}))
    assert got["norm.weight"] == (1e-3, 0.0)
    assert got["blocks.0.norm1.weight"] == (1e-3, 0.05)


def test_equal_settings_share_one_group(vit):
    optimizer = build_optimizer(
        vit,
        ADAMW,
        {
            "norm_decay_mult": 0.0,
            "bias_decay_mult": 0.0,
            "rules": {"pos_embed": {"decay_mult": 0.0}, "cls_token": {"decay_mult": 0.0}},
        },
    )
    assert [g["name"] for g in optimizer.param_groups] == ["no_decay", "default"]
    no_decay = optimizer.param_groups[0]["param_names"]
    assert no_decay[:3] == ["cls_token", "pos_embed", "patch_embed.proj.bias"]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(vit.parameters()))


def test_freeze_rule_excludes_params_and_a_longer_rule_overrides_it():
    model = timm.create_model("test_vit", pretrained=False)
    rules = {"blocks.*": {"freeze": True}, "blocks.5.*": {"lr_mult": 2.0}, "patch_embed.*": {"freeze": True}}
    optimizer = build_optimizer(model, ADAMW, {"rules": rules})
    held = {n for g in optimizer.param_groups for n in g["param_names"]}
    assert (
        not model.blocks[0].attn.qkv.weight.requires_grad and not model.patch_embed.proj.weight.requires_grad
    )
    assert model.blocks[5].attn.qkv.weight.requires_grad
    assert "blocks.0.attn.qkv.weight" not in held and "blocks.5.attn.qkv.weight" in held
    assert optimizer.paramwise_report["blocks.0.norm1.weight"]["rule"] == "blocks.*"


def test_a_failing_build_freezes_nothing():
    model = timm.create_model("test_vit", pretrained=False)
    with pytest.raises(RecipeError):
        build_optimizer(model, ADAMW, {"rules": {"blocks.*": {"freeze": True}, "nope.*": {"lr_mult": 2.0}}})
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_params_stay_out_of_the_optimizer_even_without_paramwise():
    model = timm.create_model("test_resnet", pretrained=False)
    model.conv1.requires_grad_(False)
    for paramwise in ({}, {"norm_decay_mult": 0.0}):
        held = {n for g in build_optimizer(model, SGD, paramwise).param_groups for n in g["param_names"]}
        assert not any(n.startswith("conv1.") for n in held) and "fc.weight" in held


def test_everything_frozen_is_an_error():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(RecipeError, match="no trainable parameter"):
        build_optimizer(model, SGD, {})


class Shared(nn.Module):
    """A module reachable under two parents (the shared-parameter case MMEngine raises on)."""

    def __init__(self):
        super().__init__()
        shared = nn.Linear(2, 2)
        self.a = nn.Sequential(shared)
        self.b = nn.Sequential(shared, nn.Linear(2, 2))


def test_shared_parameter_needs_bypass_duplicate():
    with pytest.raises(RecipeError) as info:
        build_optimizer(Shared(), SGD, {"norm_decay_mult": 0.0})
    assert info.value.key == "paramwise.bypass_duplicate"
    assert "'b.0.weight' is the same tensor as 'a.0.weight'" in str(info.value)


def test_bypass_duplicate_keeps_the_first_occurrence():
    model = Shared()
    optimizer = build_optimizer(model, SGD, {"bypass_duplicate": True, "rules": {"b.*": {"lr_mult": 0.5}}})
    names = [n for g in optimizer.param_groups for n in g["param_names"]]
    assert names == ["a.0.weight", "a.0.bias", "b.1.weight", "b.1.bias"]
    assert settings(model, optimizer)["a.0.weight"] == (0.1, 1e-4)  # 'b.*' never sees the shared tensor


def test_shared_parameter_without_paramwise_is_optimized_once():
    optimizer = build_optimizer(Shared(), SGD, {})
    assert len(optimizer.param_groups[0]["params"]) == 4


def test_rule_that_matches_nothing_is_an_error_naming_it(vit):
    with pytest.raises(RecipeError) as info:
        build_optimizer(vit, ADAMW, {"rules": {"blocks.99.*": {"lr_mult": 0.1}}})
    assert info.value.key == 'paramwise.rules."blocks.99.*"'
    assert "matches no parameter of VisionTransformer" in str(info.value)


@pytest.mark.parametrize(
    ("glob", "hint"),
    [
        (".cls_token", "no leading dot"),
        ("attn", "'*attn*' would match 24 parameters"),
        ("head.weigth", "did you mean 'head.weight'"),
    ],
)
def test_rule_that_matches_nothing_explains_why(vit, glob, hint):
    with pytest.raises(RecipeError) as info:
        build_optimizer(vit, ADAMW, {"rules": {glob: {"lr_mult": 0.1}}})
    assert hint in str(info.value)


def test_rule_shadowed_everywhere_by_longer_rules_is_an_error(vit):
    rules = {"head.*": {"lr_mult": 10.0}, "head.weight": {"lr_mult": 5.0}, "head.bias": {"lr_mult": 5.0}}
    with pytest.raises(RecipeError, match="has no effect") as info:
        build_optimizer(vit, ADAMW, {"rules": rules})
    assert info.value.key == 'paramwise.rules."head.*"'


class ToyDeformConv2d(nn.Module):
    """Stands in for mmcv's DeformConv2d: the offset conv is a child named conv_offset."""

    def __init__(self):
        super().__init__()
        self.conv_offset = nn.Conv2d(4, 18, 3)
        self.weight = nn.Parameter(torch.zeros(4, 4, 3, 3))


def test_dcn_offset_lr_mult_applies_to_offset_conv_weight_and_bias(monkeypatch):
    monkeypatch.setattr(paramwise_module, "dcn_types", lambda: (ToyDeformConv2d,))
    model = nn.Sequential(ToyDeformConv2d(), nn.Conv2d(4, 4, 1))
    paramwise = {"dcn_offset_lr_mult": 0.1, "bias_lr_mult": 2.0, "bias_decay_mult": 0.0}
    got = settings(model, build_optimizer(model, SGD, paramwise))
    assert got["0.conv_offset.weight"] == (0.1 * 0.1, 1e-4)
    assert got["0.conv_offset.bias"] == (0.1 * 0.1, 1e-4)  # neither bias mult applies under a DCN
    assert got["1.bias"] == (0.2, 0.0)


def test_optimizer_without_default_lr_cannot_scale_it():
    model = nn.Linear(2, 2)
    build_optimizer(model, {"type": "TimmAdafactor"}, {"bias_decay_mult": 0.0})
    with pytest.raises(RecipeError) as info:
        build_optimizer(model, {"type": "TimmAdafactor"}, {"bias_lr_mult": 2.0})
    assert info.value.key == "optimizer.lr"


def test_optimizer_rejecting_its_arguments_becomes_a_recipe_error():
    with pytest.raises(RecipeError, match="SGD rejected its arguments: Nesterov") as info:
        build_optimizer(nn.Linear(2, 2), {"type": "SGD", "lr": 0.1, "nesterov": True}, {})
    assert info.value.key == "optimizer"


def test_wrapped_model_uses_the_inner_names(vit):
    optimizer = build_optimizer(nn.DataParallel(vit), ADAMW, {"rules": {"head.*": {"lr_mult": 10.0}}})
    assert optimizer.param_groups[1]["param_names"] == ["head.weight", "head.bias"]


def test_builds_on_the_meta_device():
    with torch.device("meta"):
        model = timm.create_model("test_convnext", pretrained=False)
    optimizer = build_optimizer(
        model, ADAMW, {"norm_decay_mult": 0.0, "rules": {"head.*": {"lr_mult": 10.0}}}
    )
    assert len(optimizer.param_groups) == 3


def test_thousands_of_tensors_and_dozens_of_rules_each_get_their_rule():
    # How fast this builds is scripts/benchmark.py's business (docs/benchmarks.md, "Setup costs"): a time
    # limit here would fail on a busy machine and prove nothing on a fast one.
    with torch.device("meta"):
        model = timm.create_model("vit_small_patch16_224", depth=120, pretrained=False)  # 1,448 tensors
    rules = {f"blocks.{i}.*": {"lr_mult": 0.5 + i / 100} for i in range(0, 120, 3)}
    rules |= {"*.norm*": {"decay_mult": 0.0}, "head.*": {"lr_mult": 10.0}}
    optimizer = build_optimizer(
        model, ADAMW, {"bias_decay_mult": 0.0, "norm_decay_mult": 0.0, "rules": rules}
    )
    got = settings(model, optimizer)
    assert len(got) == len(list(model.parameters())) == 1448
    lr, wd = ADAMW["lr"], ADAMW["weight_decay"]
    assert got["blocks.3.mlp.fc1.weight"] == pytest.approx((lr * 0.53, wd))
    assert got["blocks.3.mlp.fc1.bias"] == pytest.approx((lr * 0.53, wd))  # a rule wins over bias_decay_mult
    assert got["blocks.4.mlp.fc1.weight"] == pytest.approx((lr, wd))  # no rule for block 4
    assert got["blocks.4.mlp.fc1.bias"] == pytest.approx((lr, 0.0))
    assert got["blocks.4.norm1.weight"] == pytest.approx((lr, 0.0))  # "*.norm*"
    assert got["blocks.117.norm1.weight"] == pytest.approx((lr * 1.67, wd))  # the longer pattern wins
    assert got["head.weight"] == pytest.approx((lr * 10.0, wd))
