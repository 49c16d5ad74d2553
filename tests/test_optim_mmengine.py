"""Per-parameter lr and weight decay equal MMEngine 0.10.7's DefaultOptimWrapperConstructor exactly.

MMEngine's custom key ``k`` (a substring test) is translated to our glob ``*k*``.
"""

from __future__ import annotations

import copy
import logging

import pytest
import timm
import torch
from torch import nn

from trainer.errors import RecipeError
from trainer.optim import build_optimizer

mmengine_optim = pytest.importorskip("mmengine.optim")

SGD = {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
ADAMW = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}
TYPE_CONFIGS = [
    {},
    {"norm_decay_mult": 0.0},
    {"bias_decay_mult": 0.5},
    {"flat_decay_mult": 0.0},
    {"dwconv_decay_mult": 0.25},
    {"bias_lr_mult": 2.0},
    {"norm_decay_mult": 0.0, "flat_decay_mult": 0.5},
    {
        "bias_lr_mult": 2.0,
        "bias_decay_mult": 0.5,
        "norm_decay_mult": 0.0,
        "dwconv_decay_mult": 0.25,
        "flat_decay_mult": 0.125,
    },
]
CUSTOM_KEYS = {
    "test_vit": {
        "blocks.1": {"lr_mult": 0.5},
        "blocks.1.attn": {"lr_mult": 0.25, "decay_mult": 0.5},
        "norm": {"decay_mult": 0.0},
        "head": {"lr_mult": 10.0},
        "pos_embed": {"decay_mult": 0.0},
        "cls_token": {"decay_mult": 0.0},
    },
    "test_convnext": {
        "stages.1": {"lr_mult": 0.5},
        "conv_dw": {"decay_mult": 0.0},
        "stem": {"lr_mult": 0.1},
        "head.fc": {"lr_mult": 10.0},
        "gamma": {"decay_mult": 0.0},
    },
    "test_resnet": {
        "layer1": {"lr_mult": 0.5},
        "bn": {"decay_mult": 0.0},
        "downsample": {"lr_mult": 0.3},
        "fc": {"lr_mult": 10.0, "decay_mult": 2.0},
    },
    "mobilenetv3_small_050": {
        "blocks.1": {"lr_mult": 0.5},
        "bn": {"decay_mult": 0.0},
        "conv_dw": {"decay_mult": 0.25},
        "classifier": {"lr_mult": 10.0},
        "se.": {"lr_mult": 2.0},
    },
}


class PWToy(nn.Module):
    """MMEngine reference toy: every classification corner (RMSNorm, in_channels=1, Conv1d, frozen)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, groups=8)
        self.conv_in1 = nn.Conv2d(1, 4, 1)
        self.gn = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(8)
        self.rms = nn.RMSNorm(8)
        self.conv1d_dw = nn.Conv1d(8, 8, 3, groups=8)
        self.fc = nn.Linear(8, 4)
        self.scale = nn.Parameter(torch.ones(8))
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


@pytest.fixture(autouse=True, scope="module")
def quiet_mmengine():
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def mmengine_settings(model: nn.Module, optimizer_cfg: dict, paramwise_cfg: dict) -> dict[str, tuple]:
    ctor = mmengine_optim.DefaultOptimWrapperConstructor(
        {"optimizer": copy.deepcopy(optimizer_cfg)}, copy.deepcopy(paramwise_cfg)
    )
    return _by_name(model, ctor(model).optimizer)


def our_settings(model: nn.Module, optimizer_cfg: dict, paramwise_cfg: dict) -> dict[str, tuple]:
    ours = dict(paramwise_cfg)
    if "custom_keys" in ours:
        ours["rules"] = {f"*{k}*": v for k, v in ours.pop("custom_keys").items()}
    return _by_name(model, build_optimizer(model, optimizer_cfg, ours))


def _by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, tuple]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}


def assert_same(model: nn.Module, optimizer_cfg: dict, paramwise_cfg: dict) -> None:
    expected = mmengine_settings(model, optimizer_cfg, paramwise_cfg)
    got = our_settings(model, optimizer_cfg, paramwise_cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # Deviation: without paramwise MMEngine hands frozen parameters to the optimizer; we never do.
    assert got == {n: v for n, v in expected.items() if n in trainable}


@pytest.fixture(scope="module", params=list(CUSTOM_KEYS))
def model(request):
    return timm.create_model(request.param, pretrained=False)


@pytest.mark.parametrize("optimizer_cfg", [SGD, ADAMW], ids=["SGD", "AdamW"])
@pytest.mark.parametrize("paramwise_cfg", TYPE_CONFIGS, ids=lambda c: ",".join(c) or "empty")
def test_type_multipliers_match_mmengine(model, optimizer_cfg, paramwise_cfg):
    assert_same(model, optimizer_cfg, paramwise_cfg)


@pytest.mark.parametrize("optimizer_cfg", [SGD, ADAMW], ids=["SGD", "AdamW"])
def test_custom_keys_with_type_multipliers_match_mmengine(model, optimizer_cfg):
    custom_keys = CUSTOM_KEYS[model.default_cfg["architecture"]]
    assert_same(model, optimizer_cfg, {"custom_keys": custom_keys})
    assert_same(
        model,
        optimizer_cfg,
        {
            "custom_keys": custom_keys,
            "norm_decay_mult": 0.0,
            "bias_lr_mult": 2.0,
            "bias_decay_mult": 0.0,
            "dwconv_decay_mult": 0.5,
        },
    )


@pytest.mark.parametrize("paramwise_cfg", TYPE_CONFIGS, ids=lambda c: ",".join(c) or "empty")
def test_classification_corners_match_mmengine(paramwise_cfg):
    assert_same(PWToy(), SGD, paramwise_cfg)


def test_precedence_on_the_reference_toy_matches_mmengine():
    custom_keys = {
        "bn": {"lr_mult": 0.5},
        "conv": {"lr_mult": 0.1, "decay_mult": 0.2},
        "conv.bias": {"lr_mult": 3.0},
        "dw": {"decay_mult": 0.0},
    }
    assert_same(PWToy(), SGD, {"bias_lr_mult": 2.0, "norm_decay_mult": 0.0, "custom_keys": custom_keys})


def test_equal_length_keys_tie_alphabetically_as_in_mmengine():
    assert_same(PWToy(), SGD, {"custom_keys": {"conv": {"lr_mult": 0.5}, "bias": {"lr_mult": 0.25}}})


def test_missing_weight_decay_uses_the_optimizer_default_as_mmengine_does():
    model = timm.create_model("test_vit", pretrained=False)
    for optimizer_cfg in ({"type": "AdamW", "lr": 1e-3}, {"type": "SGD", "lr": 0.1}):
        assert_same(model, optimizer_cfg, {"bias_lr_mult": 2.0, "custom_keys": {"head": {"lr_mult": 10.0}}})


def test_bypass_duplicate_matches_mmengine():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(4, 2)
            self.head = nn.Linear(2, 4, bias=False)
            self.head.weight = self.emb.weight

    assert_same(Tied(), SGD, {"bypass_duplicate": True})
    with pytest.raises(ValueError, match="more than one parameter group"):
        mmengine_settings(Tied(), SGD, {"norm_decay_mult": 0.0})
    with pytest.raises(RecipeError, match="bypass_duplicate"):
        our_settings(Tied(), SGD, {"norm_decay_mult": 0.0})


def test_a_key_shadowed_everywhere_is_silent_in_mmengine_but_an_error_here():
    custom_keys = {"fc.w": {"lr_mult": 0.5}, "c.we": {"lr_mult": 0.25}}  # 'c.we' wins for fc.weight
    assert mmengine_settings(PWToy(), SGD, {"custom_keys": custom_keys})["fc.weight"] == (0.025, 1e-4)
    with pytest.raises(RecipeError, match="has no effect") as info:
        our_settings(PWToy(), SGD, {"custom_keys": custom_keys})
    assert info.value.key == 'paramwise.rules."*fc.w*"'
