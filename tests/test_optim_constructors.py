"""Constructor registry: built-ins under our and MMEngine's names, user constructors by decorator or path."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import timm
import torch

from trainer.errors import RecipeError
from trainer.optim import CONSTRUCTORS, build_optimizer, register_constructor
from trainer.optim.layer_decay import layer_decay_constructor
from trainer.optim.paramwise import default_constructor

PLUGINS = Path(__file__).parent / "fixtures" / "optim"
ADAMW = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    return importlib.import_module("optim_plugins")


def test_builtins_answer_to_mmengine_names_too():
    assert (
        CONSTRUCTORS.get("Default")
        is CONSTRUCTORS.get("DefaultOptimWrapperConstructor")
        is default_constructor
    )
    assert CONSTRUCTORS.get("LayerDecay") is layer_decay_constructor
    assert CONSTRUCTORS.get("LearningRateDecayOptimWrapperConstructor") is layer_decay_constructor


def test_registered_constructor_is_used_by_name(plugins):
    model = timm.create_model("test_resnet", pretrained=False)
    optimizer = build_optimizer(
        model, {**ADAMW, "constructor": {"type": "HeadOnly", "prefix": "fc"}}, {"bias_decay_mult": 0.0}
    )
    assert [g["param_names"] for g in optimizer.param_groups] == [["fc.weight"], ["fc.bias"]]
    assert not model.conv1[0].weight.requires_grad


def test_constructor_by_dotted_path(plugins):
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(
        model, {"type": "SGD", "lr": 0.3, "constructor": {"type": "optim_plugins:one_group"}}, {}
    )
    assert type(optimizer) is torch.optim.SGD and optimizer.param_groups[0]["lr"] == 0.3


def test_constructor_given_as_a_bare_name():
    model = torch.nn.Linear(2, 2)
    assert len(build_optimizer(model, {**ADAMW, "constructor": "Default"}, {}).param_groups) == 1


def test_unknown_constructor_fails_before_building():
    with pytest.raises(RecipeError, match="did you mean 'LayerDecay'") as info:
        build_optimizer(torch.nn.Linear(2, 2), {**ADAMW, "constructor": {"type": "Layerdecay"}}, {})
    assert info.value.key == "optimizer.constructor.type"


def test_register_constructor_attaches_an_argument_check():
    def check(args):
        if args:
            raise RecipeError("optimizer.constructor", "takes nothing")

    @register_constructor(name="TestNoArgs", validate_args=check)
    def no_args(model, optimizer_cfg, paramwise_cfg):
        return default_constructor(model, optimizer_cfg, paramwise_cfg)

    build_optimizer(torch.nn.Linear(2, 2), {**ADAMW, "constructor": {"type": "TestNoArgs"}}, {})
    with pytest.raises(RecipeError, match="takes nothing"):
        build_optimizer(torch.nn.Linear(2, 2), {**ADAMW, "constructor": {"type": "TestNoArgs", "x": 1}}, {})
