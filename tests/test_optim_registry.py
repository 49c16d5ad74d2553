"""The optimizer registry: torch and timm classes by name, MMPretrain aliases, the user's own, errors."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import timm.optim
import torch

from trainer.errors import RecipeError
from trainer.optim import OPTIMIZERS, build_optimizer
from trainer.optim.registry import optimizer_signature

PLUGINS = Path(__file__).parent / "fixtures" / "optim"


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    return importlib.import_module("optim_plugins")


@pytest.mark.parametrize(
    "name",
    [
        "SGD",
        "Adam",
        "AdamW",
        "RMSprop",
        "Adagrad",
        "NAdam",
        "RAdam",
        "Adamax",
        "ASGD",
        "Rprop",
        "Adadelta",
        "SparseAdam",
        "LBFGS",
    ],
)
def test_every_torch_optimizer_is_registered_by_class_name(name):
    assert OPTIMIZERS.get(name) is getattr(torch.optim, name)


@pytest.mark.parametrize(
    "name",
    [
        "Lamb",
        "Lars",
        "Lion",
        "AdamP",
        "Adan",
        "SGDP",
        "MADGRAD",
        "NAdamW",
        "AdaBelief",
        "Adopt",
        "LaProp",
        "Mars",
        "RMSpropTF",
        "AdamWLegacy",
    ],
)
def test_timm_optimizers_are_registered_by_class_name(name):
    assert OPTIMIZERS.get(name) is getattr(timm.optim, name)


def test_mmpretrain_spellings_are_aliases_of_timm_classes():
    assert OPTIMIZERS.get("LAMB") is timm.optim.Lamb
    assert OPTIMIZERS.get("LARS") is timm.optim.Lars
    assert OPTIMIZERS.get("Adan") is timm.optim.Adan


def test_torch_owns_clashing_names_and_timm_gets_a_prefix():
    assert OPTIMIZERS.get("Adafactor") is torch.optim.Adafactor
    assert OPTIMIZERS.get("TorchAdafactor") is torch.optim.Adafactor  # MMEngine's name for it
    assert OPTIMIZERS.get("TimmAdafactor") is timm.optim.Adafactor


def test_wrappers_that_do_not_take_params_are_not_registered():
    assert "Lookahead" not in OPTIMIZERS


def test_unknown_optimizer_suggests_close_names():
    with pytest.raises(RecipeError) as info:
        build_optimizer(torch.nn.Linear(2, 2), {"type": "AdamWW", "lr": 1e-3}, {})
    assert info.value.key == "optimizer.type"
    assert "did you mean 'AdamW'" in str(info.value)


def test_lowercase_name_suggests_the_class_name():
    with pytest.raises(RecipeError, match="did you mean 'Lamb'"):
        OPTIMIZERS.get("lamb", key="optimizer.type")


def test_decorator_registers_a_user_optimizer(plugins):
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, {"type": "PluginSGD", "lr": 0.5, "nudge": 2.0}, {})
    assert isinstance(optimizer, plugins.PluginSGD)
    assert optimizer.nudge == 2.0 and optimizer.param_groups[0]["lr"] == 0.5


def test_dotted_path_reaches_an_unregistered_class(plugins):
    optimizer = build_optimizer(torch.nn.Linear(2, 2), {"type": "optim_plugins:DottedAdam", "lr": 1e-3}, {})
    assert type(optimizer) is plugins.DottedAdam


def test_dotted_path_to_a_missing_module_names_the_key():
    with pytest.raises(RecipeError) as info:
        build_optimizer(torch.nn.Linear(2, 2), {"type": "no_such_pkg.optim:Fast", "lr": 1e-3}, {})
    assert info.value.key == "optimizer.type"
    assert "cannot import module 'no_such_pkg.optim'" in str(info.value)


def test_dotted_path_to_a_missing_class_suggests_close_names(plugins):
    with pytest.raises(RecipeError, match="did you mean 'DottedAdam'"):
        build_optimizer(torch.nn.Linear(2, 2), {"type": "optim_plugins:DottedAdamm"}, {})


def test_signature_puts_params_first_and_sees_kwargs(plugins):
    sig = optimizer_signature(plugins.AnyKwargsSGD)
    assert sig.params_arg == "params" and sig.takes_any
    assert optimizer_signature(plugins.NeedsScaleSGD).required == ("scale",)
    assert optimizer_signature(torch.optim.AdamW).defaults["weight_decay"] == 0.01


def test_importing_trainer_optim_does_not_import_timm_optim():
    code = "import sys, trainer.optim; print('timm.optim' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_recipe_imports_make_a_registered_optimizer_available(tmp_path, monkeypatch):
    from trainer.model import build_model
    from trainer.recipe.load import load_recipe

    monkeypatch.syspath_prepend(str(PLUGINS))
    recipe = tmp_path / "plugin.toml"
    recipe.write_text(
        'imports = ["optim_plugins"]\n[model]\nname = "test_resnet"\n'
        '[data]\npath = "data/digits"\nbatch_size = 8\n[train]\nepochs = 1\n'
        '[optimizer]\ntype = "PluginSGD"\nlr = 0.2\nnudge = 3.0\n'
    )
    cfg = load_recipe(recipe).cfg
    optimizer = build_optimizer(build_model(cfg["model"], device="meta"), cfg["optimizer"], cfg["paramwise"])
    assert type(optimizer).__name__ == "PluginSGD" and optimizer.nudge == 3.0
