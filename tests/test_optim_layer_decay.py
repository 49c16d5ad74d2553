"""LayerDecay: lr = base × lr_mult × decay_rate ** (num_layers - 1 - layer_id), layers from group_matcher."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.optim import param_groups_layer_decay
from torch import nn

from trainer.errors import RecipeError
from trainer.optim import build_optimizer


def layer_decay(rate: float = 0.5, **args) -> dict:
    return {
        "type": "AdamW",
        "lr": 1.0,
        "weight_decay": 0.05,
        "constructor": {"type": "LayerDecay", "decay_rate": rate, **args},
    }


def by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g for g in optimizer.param_groups for p in g["params"]}


@pytest.fixture(scope="module")
def vit():
    return timm.create_model("test_vit", pretrained=False)  # 6 blocks, embed 64


def test_vit_layer_scales_follow_the_block_index(vit):
    groups = by_name(vit, build_optimizer(vit, layer_decay(0.5), {}))
    # layers: 0 = cls_token/pos_embed/patch_embed, 1..6 = blocks.0..5 (timm puts the final norm with
    # blocks.5), 7 = head; 8 layers, so scale = 0.5 ** (7 - layer_id).
    expected = {
        "cls_token": 0.5**7,
        "pos_embed": 0.5**7,
        "patch_embed.proj.weight": 0.5**7,
        "blocks.0.attn.qkv.weight": 0.5**6,
        "blocks.3.mlp.fc1.bias": 0.5**3,
        "blocks.5.norm1.weight": 0.5,
        "norm.weight": 0.5,
        "head.weight": 1.0,
        "head.bias": 1.0,
    }
    for name, scale in expected.items():
        assert groups[name]["lr"] == scale and groups[name]["lr_scale"] == scale, name
    assert groups["blocks.0.attn.qkv.weight"]["layer_id"] == 1 and groups["head.weight"]["layer_id"] == 7


def test_vit_no_decay_for_1d_params_and_model_no_weight_decay_names(vit):
    groups = by_name(vit, build_optimizer(vit, layer_decay(0.5), {}))
    for name in ("cls_token", "pos_embed", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias", "head.bias"):
        assert groups[name]["weight_decay"] == 0.0, name
    for name in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "head.weight"):
        assert groups[name]["weight_decay"] == 0.05, name


def test_vit_gets_two_groups_per_layer_not_one_per_parameter(vit):
    optimizer = build_optimizer(vit, layer_decay(0.5), {})
    assert len(optimizer.param_groups) == 16
    assert {g["name"] for g in optimizer.param_groups} >= {"layer_0,no_decay", "layer_0", "layer_7"}


def make_model(name: str) -> nn.Module:
    if name != "swin":
        return timm.create_model(name, pretrained=False)
    with torch.device("meta"):
        return timm.create_model(
            "swin_tiny_patch4_window7_224", depths=(1, 1, 2, 1), embed_dim=32, num_heads=(1, 1, 1, 1)
        )


@pytest.mark.parametrize("name", ["test_vit", "test_convnext", "test_resnet", "swin"])
def test_values_equal_timm_param_groups_layer_decay(name):
    model = make_model(name)
    no_wd = getattr(model, "no_weight_decay", set)()
    reference = param_groups_layer_decay(
        model, weight_decay=0.05, no_weight_decay_list=no_wd, layer_decay=0.65
    )
    names = {id(p): n for n, p in model.named_parameters()}
    expected = {
        names[id(p)]: (0.01 * g["lr_scale"], g["weight_decay"]) for g in reference for p in g["params"]
    }
    optimizer = build_optimizer(model, {**layer_decay(0.65), "lr": 0.01}, {})
    got = {n: (g["lr"], g["weight_decay"]) for n, g in by_name(model, optimizer).items()}
    assert got == expected


def test_mmpretrain_style_config_gives_the_same_decay_as_the_defaults(vit):
    defaults = build_optimizer(vit, layer_decay(0.75), {})
    mmpretrain = build_optimizer(
        vit,
        layer_decay(0.75, exclude_1d=False, exclude_no_weight_decay=False),
        {
            "norm_decay_mult": 0.0,
            "bias_decay_mult": 0.0,
            "flat_decay_mult": 0.0,
            "rules": {"cls_token": {"decay_mult": 0.0}, "pos_embed": {"decay_mult": 0.0}},
        },
    )
    plain = {n: (g["lr"], g["weight_decay"]) for n, g in by_name(vit, defaults).items()}
    assert {n: (g["lr"], g["weight_decay"]) for n, g in by_name(vit, mmpretrain).items()} == plain


def test_switching_exclusions_off_decays_everything(vit):
    groups = by_name(
        vit, build_optimizer(vit, layer_decay(0.5, exclude_1d=False, exclude_no_weight_decay=False), {})
    )
    assert {g["weight_decay"] for g in groups.values()} == {0.05}


def test_rules_multiply_lr_on_top_and_replace_decay(vit):
    rules = {"head.*": {"lr_mult": 10.0}, "blocks.0.*": {"lr_mult": 0.5}, "*.bias": {"decay_mult": 1.0}}
    groups = by_name(vit, build_optimizer(vit, layer_decay(0.5), {"rules": rules}))
    assert groups["head.weight"]["lr"] == 10.0 and groups["head.weight"]["lr_mult"] == 10.0
    assert groups["blocks.0.attn.qkv.weight"]["lr"] == 0.5 * 0.5**6
    assert groups["blocks.1.attn.qkv.bias"]["weight_decay"] == 0.05  # the rule overrides exclude_1d
    assert groups["blocks.1.norm1.weight"]["weight_decay"] == 0.0


def test_freeze_rule_works_with_layer_decay():
    model = timm.create_model("test_vit", pretrained=False)
    optimizer = build_optimizer(model, layer_decay(0.5), {"rules": {"patch_embed.*": {"freeze": True}}})
    held = {n for g in optimizer.param_groups for n in g["param_names"]}
    assert "patch_embed.proj.weight" not in held and "cls_token" in held


def test_mmpretrain_argument_name_and_rate_one_disable_decay(vit):
    optimizer = build_optimizer(
        vit, {**layer_decay(), "constructor": {"type": "LayerDecay", "layer_decay_rate": 1.0}}, {}
    )
    assert {g["lr"] for g in optimizer.param_groups} == {1.0}


def test_model_without_group_matcher_is_an_error():
    with pytest.raises(RecipeError, match="needs a model that defines group_matcher") as info:
        build_optimizer(nn.Sequential(nn.Linear(2, 2)), layer_decay(0.5), {})
    assert info.value.key == "optimizer.constructor.type"


def test_resnet_stages_are_layers():
    model = timm.create_model("test_resnet", pretrained=False)
    groups = by_name(model, build_optimizer(model, layer_decay(0.5), {}))
    assert groups["conv1.0.weight"]["lr"] == 0.5**5
    assert groups["layer2.0.conv1.weight"]["lr"] == 0.5**3
    assert groups["fc.weight"]["lr"] == 1.0
