"""Model-free checks of [optimizer] and [paramwise]: one RecipeError with the exact key path."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from trainer.errors import RecipeError
from trainer.optim import build_optimizer, validate_optimizer_cfg, validate_paramwise_cfg
from trainer.optim.hyperparams import base_hyperparams
from trainer.optim.paramwise_options import parse_paramwise

PLUGINS = Path(__file__).parent / "fixtures" / "optim"
ADAMW = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    return importlib.import_module("optim_plugins")


@pytest.fixture
def vit():
    """A fresh tiny ViT per test (freezing rules change requires_grad)."""
    return timm.create_model("test_vit", pretrained=False)


def accepted(
    cfg: dict, model: nn.Module | None = None, paramwise: dict | None = None
) -> torch.optim.Optimizer:
    """Validate `cfg` (it must pass) and build it: what a passing check lets through reaches the optimizer."""
    validate_optimizer_cfg(cfg)
    if paramwise is not None:
        validate_paramwise_cfg(paramwise, cfg)
    return build_optimizer(model if model is not None else nn.Linear(2, 2), cfg, paramwise or {})


def error(fn, *args) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return info.value


def test_a_valid_optimizer_passes():
    (group,) = accepted({**ADAMW, "betas": [0.9, 0.95], "eps": 1e-8, "amsgrad": True}).param_groups
    assert [group[k] for k in ("lr", "weight_decay", "eps", "amsgrad")] == [1e-3, 0.05, 1e-8, True]
    assert tuple(group["betas"]) == (0.9, 0.95)
    sgd = accepted({"type": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True})
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.param_groups[0]["momentum"], sgd.param_groups[0]["nesterov"]) == (0.9, True)


def test_lr_zero_is_allowed_as_torch_allows_it():
    assert accepted({"type": "SGD", "lr": 0.0}).param_groups[0]["lr"] == 0.0


def test_missing_type_is_an_error():
    assert error(validate_optimizer_cfg, {"lr": 1e-3}).key == "optimizer.type"


def test_unknown_argument_suggests_the_right_one():
    err = error(validate_optimizer_cfg, {**ADAMW, "weight_decays": 0.1})
    assert err.key == "optimizer.weight_decays"
    assert "did you mean 'weight_decay'" in str(err) and "AdamW does not take" in str(err)


def test_argument_of_another_optimizer_is_rejected():
    err = error(validate_optimizer_cfg, {"type": "SGD", "lr": 0.1, "betas": [0.9, 0.99]})
    assert err.key == "optimizer.betas"


def test_params_cannot_be_set_in_the_recipe():
    assert error(validate_optimizer_cfg, {**ADAMW, "params": []}).key == "optimizer.params"


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({**ADAMW, "lr": -1e-3}, "optimizer.lr"),
        ({**ADAMW, "lr": "0.1"}, "optimizer.lr"),
        ({**ADAMW, "weight_decay": -0.1}, "optimizer.weight_decay"),
        ({**ADAMW, "betas": [0.9]}, "optimizer.betas"),
        ({**ADAMW, "betas": [0.9, 1.0]}, "optimizer.betas"),
        ({**ADAMW, "betas": 0.9}, "optimizer.betas"),
        ({"type": "SGD", "lr": 0.1, "momentum": 1.5}, "optimizer.momentum"),
        ({"type": "SGD", "lr": 0.1, "momentum": True}, "optimizer.momentum"),
    ],
)
def test_out_of_range_values_name_their_key(cfg, key):
    assert error(validate_optimizer_cfg, cfg).key == key


def test_betas_length_follows_the_optimizer_default():
    validate_optimizer_cfg({"type": "Adan", "lr": 1e-3, "betas": [0.98, 0.92, 0.99]})
    assert error(validate_optimizer_cfg, {"type": "Adan", "betas": [0.9, 0.99]}).key == "optimizer.betas"


def test_optimizer_taking_kwargs_accepts_any_key(plugins):
    optimizer = accepted({"type": "optim_plugins:AnyKwargsSGD", "whatever": 3})
    assert isinstance(optimizer, plugins.AnyKwargsSGD) and optimizer.extra == {"whatever": 3}


def test_required_optimizer_argument_must_be_given(plugins):
    err = error(validate_optimizer_cfg, {"type": "optim_plugins:NeedsScaleSGD"})
    assert err.key == "optimizer.scale" and "required" in str(err)


def test_unknown_constructor_suggests_close_names():
    err = error(validate_optimizer_cfg, {**ADAMW, "constructor": {"type": "LayerDecy", "decay_rate": 0.7}})
    assert err.key == "optimizer.constructor.type" and "did you mean 'LayerDecay'" in str(err)


@pytest.mark.parametrize(
    ("ctor", "key"),
    [
        ({"type": "LayerDecay"}, "optimizer.constructor.decay_rate"),
        ({"type": "LayerDecay", "decay_rate": 0.0}, "optimizer.constructor.decay_rate"),
        ({"type": "LayerDecay", "decay_rate": 1.5}, "optimizer.constructor.decay_rate"),
        ({"type": "LayerDecay", "decay_rate": 0.7, "decay_rat": 1}, "optimizer.constructor.decay_rat"),
        (
            {"type": "LayerDecay", "decay_rate": 0.7, "layer_decay_rate": 0.7},
            "optimizer.constructor.layer_decay_rate",
        ),
        ({"type": "LayerDecay", "decay_rate": 0.7, "exclude_1d": 1}, "optimizer.constructor.exclude_1d"),
        ({"type": "Default", "decay_rate": 0.7}, "optimizer.constructor.decay_rate"),
    ],
)
def test_constructor_arguments_are_checked(ctor, key):
    assert error(validate_optimizer_cfg, {**ADAMW, "constructor": ctor}).key == key


def lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {name: g["lr"] for g in optimizer.param_groups for name in g["param_names"]}


def test_layer_decay_accepts_mmpretrain_argument_name_and_mmengine_constructor_names(vit):
    reference = lrs(
        build_optimizer(vit, {**ADAMW, "constructor": {"type": "LayerDecay", "decay_rate": 0.65}}, {})
    )
    assert reference["head.weight"] == 1e-3 and reference["blocks.0.attn.qkv.weight"] < 1e-3  # decayed
    mmpretrain = {"type": "LayerDecay", "layer_decay_rate": 0.65}
    mmengine = {"type": "LearningRateDecayOptimWrapperConstructor", "decay_rate": 0.65}
    for ctor in (mmpretrain, mmengine):
        assert lrs(accepted({**ADAMW, "constructor": ctor}, vit)) == reference, ctor
    plain = lrs(build_optimizer(vit, ADAMW, {}))
    assert set(plain.values()) == {1e-3}
    for ctor in ({"type": "DefaultOptimWrapperConstructor"}, "Default"):
        assert lrs(accepted({**ADAMW, "constructor": ctor}, vit)) == plain, ctor


def test_user_constructor_validates_its_own_arguments(plugins):
    validate_optimizer_cfg({**ADAMW, "constructor": {"type": "HeadOnly", "prefix": "fc"}})
    assert error(validate_optimizer_cfg, {**ADAMW, "constructor": {"type": "HeadOnly", "pre": "fc"}}).key == (
        "optimizer.constructor.pre"
    )


def test_a_valid_paramwise_passes(vit):
    paramwise = {
        "norm_decay_mult": 0.0,
        "bias_lr_mult": 2,
        "bypass_duplicate": True,
        "rules": {"head.*": {"lr_mult": 10.0}, "pos_embed": {"decay_mult": 0.0, "freeze": True}},
    }
    optimizer = accepted(ADAMW, vit, paramwise)
    settings = {n: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for n in g["param_names"]}
    assert settings["head.weight"] == pytest.approx((1e-2, 0.05))
    assert settings["blocks.0.norm1.weight"] == pytest.approx((1e-3, 0.0))
    assert settings["blocks.0.attn.qkv.bias"] == pytest.approx((2e-3, 0.05))
    assert "pos_embed" not in settings and not vit.pos_embed.requires_grad  # frozen


@pytest.mark.parametrize(
    ("paramwise", "key", "text"),
    [
        ({"norm_decay_mul": 0.0}, "paramwise.norm_decay_mul", "did you mean 'norm_decay_mult'"),
        ({"norm_decay_mult": -1.0}, "paramwise.norm_decay_mult", ">= 0"),
        ({"bias_lr_mult": "2"}, "paramwise.bias_lr_mult", "expected a number"),
        ({"bypass_duplicate": 1}, "paramwise.bypass_duplicate", "true or false"),
        ({"custom_keys": {"head": {}}}, "paramwise.custom_keys", "'*k*'"),
        ({"rules": {"head.*": {"lr_mul": 2.0}}}, 'paramwise.rules."head.*".lr_mul', "did you mean 'lr_mult'"),
        ({"rules": {"head.*": {"lr_mult": -2.0}}}, 'paramwise.rules."head.*".lr_mult', ">= 0"),
        ({"rules": {"cls_token": {"freeze": "yes"}}}, "paramwise.rules.cls_token.freeze", "true or false"),
        ({"rules": {"head.*": 10.0}}, 'paramwise.rules."head.*"', "expected a table"),
        ({"rules": ["head.*"]}, "paramwise.rules", "expected a table"),
    ],
)
def test_bad_paramwise_names_the_exact_key(paramwise, key, text):
    err = error(validate_paramwise_cfg, paramwise, ADAMW)
    assert err.key == key and text in str(err)


def test_decay_multipliers_need_an_optimizer_with_weight_decay():
    rprop = {"type": "Rprop", "lr": 0.01}  # Rprop has no weight_decay argument
    assert error(validate_paramwise_cfg, {"norm_decay_mult": 0.0}, rprop).key == "paramwise.norm_decay_mult"
    err = error(validate_paramwise_cfg, {"rules": {"fc.*": {"decay_mult": 0.0}}}, rprop)
    assert err.key == 'paramwise.rules."fc.*".decay_mult'
    validate_paramwise_cfg({"rules": {"fc.*": {"lr_mult": 0.1}}}, rprop)


def test_base_lr_and_weight_decay_default_to_the_optimizer_defaults():
    assert base_hyperparams({"type": "AdamW"}) == base_hyperparams(
        {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.01}
    )
    assert base_hyperparams({"type": "Rprop"}).weight_decay is None


def test_paramwise_without_options_is_empty_even_with_an_empty_rules_table():
    assert parse_paramwise({}, ADAMW).empty
    assert parse_paramwise({"rules": {}}, ADAMW).empty
    assert not parse_paramwise({"bypass_duplicate": False}, ADAMW).empty
