"""Each renamed family's paramwise settings against MMEngine on MMPretrain's own model: a config of the
family is ported, and every timm parameter's lr and weight decay in the recipe equal what MMEngine's
build_optim_wrapper gives, from the original config, to the MMPretrain parameter it renames to.

MMEngine runs on a skeleton of MMPretrain's model rebuilt from the fixture (tests/fixtures/mmpretrain/
param_names, written from MMPretrain's real model): its parameter names and shapes under modules of the
kind MMEngine tells apart (norm, depthwise conv, other). So the renaming, the module kinds of both models
and the port's translation of custom_keys and multipliers are all under test.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from trainer.optim import describe_params
from trainer.port import port_config
from trainer.port.names import report_timm_only
from trainer.port.report import Report
from trainer.recipe.load import validate
from trainer.run.build import build_static

pytest.importorskip("mmengine", minversion="0.10.7")
from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmpretrain"
CONFIGS = FIXTURES / "configs"
PORTED = {
    path.stem: json.loads(path.read_text())
    for path in sorted((FIXTURES / "param_names").glob("*.json"))
    if '"config"' in path.read_text()
}
"""Fixtures written from a config under configs/."""
PARAMWISE = [name for name, fixture in PORTED.items() if fixture["paramwise"]]
"""Those whose config sets paramwise options (multipliers or custom_keys): one per family that has such a
config (the other families' configs give every parameter the same lr and weight decay)."""
KIND_MODULES = {"norm": lambda: nn.LayerNorm(1), "dwconv": lambda: nn.Conv2d(1, 1, 1), "other": nn.Module}
"""A module MMEngine classifies as each kind (a Conv2d with in_channels == groups is depthwise to it)."""


def skeleton(params: list[dict]) -> nn.Module:
    """MMPretrain's model as MMEngine's constructor sees it: names, shapes and owning-module kinds."""
    root = nn.Module()
    for row in params:
        path, _, attr = row["name"].rpartition(".")
        node = root
        parts = path.split(".")
        for i, part in enumerate(parts):
            if part not in node._modules:
                leaf = i == len(parts) - 1
                child = KIND_MODULES[row["kind"]]() if leaf else nn.Module()
                for own in list(child._parameters):
                    delattr(child, own)
                node.add_module(part, child)
            node = node._modules[part]
        assert isinstance(node, type(KIND_MODULES[row["kind"]]())), row["name"]
        node.register_parameter(attr, nn.Parameter(torch.empty(row["shape"], device="meta")))
    return root


def mmengine_groups(config: Path, params: list[dict]) -> dict[str, tuple[float, float]]:
    """{MMPretrain name: (lr, weight_decay)} as MMEngine builds them from the config's optim_wrapper."""
    wrapper_cfg = copy.deepcopy(
        Config.fromfile(str(config), import_custom_modules=False).optim_wrapper.to_dict()
    )
    wrapper_cfg["type"] = "OptimWrapper"  # AmpOptimWrapper needs CUDA; the param groups are the same
    for key in ("dtype", "loss_scale"):
        wrapper_cfg.pop(key, None)
    model = skeleton(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer = build_optim_wrapper(model, wrapper_cfg).optimizer
    group = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    return {
        n: (group[id(p)]["lr"], group[id(p)].get("weight_decay", 0.0)) for n, p in model.named_parameters()
    }


@pytest.mark.parametrize("name", PARAMWISE, ids=PARAMWISE)
def test_recipe_param_groups_equal_mmengines_on_mmpretrains_model(name):
    fixture = PORTED[name]
    config = CONFIGS / fixture["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ported = port_config(config)
    assert ported.recipe["model"] == fixture["timm"]  # the fixture's model is the config's
    built = build_static(validate(ported.recipe))
    ours = {
        p["name"]: (p["lr"], p["weight_decay"])
        for p in describe_params(built.model, built.optimizer)["params"]
    }
    theirs = mmengine_groups(config, fixture["params"])
    renamed = ported.mmpretrain_names
    assert renamed is not None and set(renamed) == set(ours)
    compared = 0
    for timm_name, mm_name in renamed.items():
        if mm_name in theirs:  # a timm-only parameter (declared) has nothing to compare with
            assert ours[timm_name] == pytest.approx(theirs[mm_name], rel=1e-12), (timm_name, mm_name)
            compared += 1
    assert compared >= len(theirs) * 0.9
    assert len(set(theirs.values())) > 1 or _custom_keys(config)  # the settings are there to be compared
    # a custom key is reported exactly where it matches no parameter of MMPretrain's model (MMEngine ignores
    # it there too); the others became rules
    keys = _custom_keys(config)
    unmapped = {i.key for i in ported.report.unmapped}
    for key in keys:
        matched = any(key in row["name"] for row in fixture["params"])
        assert (f"optim_wrapper.paramwise_cfg.custom_keys[{key!r}]" in unmapped) is not matched, key


def _custom_keys(config: Path) -> dict:
    wrapper = Config.fromfile(str(config), import_custom_modules=False).optim_wrapper
    return dict((wrapper.get("paramwise_cfg") or {}).get("custom_keys") or {})


STRUCTURAL = {
    "levit_128s": ("model.head.distillation", "unmapped", "the other is left out"),
    "efficientformer_l1": ("model.head.distillation", "notes", "the average of its two"),
    "poolformer_s12": ("model.backbone", "unmapped", "then pools; timm's poolformer_s12 pools"),
    "davit_tiny": ("model.backbone", "unmapped", "pads 3 on each side and normalizes after pooling"),
}


@pytest.mark.parametrize("name", STRUCTURAL, ids=STRUCTURAL)
def test_what_the_two_models_compute_differently_is_reported(name):
    """What the fixture script takes out before it compares logits, and heads MMPretrain cannot train."""
    key, where, text = STRUCTURAL[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ported = port_config(CONFIGS / PORTED[name]["config"])
    items = getattr(ported.report, where)
    assert any(i.key == key and text in i.message for i in items), [str(i) for i in items]


def test_timm_only_parameters_are_reported_where_paramwise_settings_apply():
    fixture = PORTED["hrnet_w18"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ported = port_config(CONFIGS / fixture["config"])
    table = ported.mmpretrain_names
    theirs = {row["name"] for row in fixture["params"]}
    extra = sorted(t for t, m in table.items() if m not in theirs)
    assert extra == [f"downsamp_modules.{i}.0.bias" for i in range(3)] + ["final_layer.0.bias"]
    report = Report()
    report_timm_only("hrnet", fixture["timm"]["name"], table, True, report)
    assert [i.key for i in report.unmapped] == ["optim_wrapper.paramwise_cfg"]
    assert "4 parameters of timm's hrnet_w18 have no MMPretrain counterpart" in report.unmapped[0].message
    report = Report()
    report_timm_only("hrnet", fixture["timm"]["name"], table, False, report)  # no settings: nothing differs
    assert not report.unmapped
    assert not [i for i in ported.report.unmapped if i.key == "optim_wrapper.paramwise_cfg"]
