"""scripts/port_mmpretrain.py against MMEngine: the ported recipe's param groups and schedule are what
MMEngine builds from the original config on the same timm model, parameter for parameter and step for step.

MMEngine sees the config's own custom_keys on MMPretrain's parameter names: the timm model's modules are
re-hung in a module tree under the names MMPretrain gives them (trainer/port/names.py, whose tables
tests/test_port_names.py checks against MMPretrain's own models). So what is tested here is the port's
translation of keys into globs, its multipliers, constructor and schedule, not the renaming itself.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trainer.model import build_model
from trainer.port import Ported, PortOptions, port_config
from trainer.recipe.load import load_recipe

mmengine = pytest.importorskip("mmengine", minversion="0.10.7")
from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import OPTIMIZERS, PARAM_SCHEDULERS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "mmpretrain"
CORPUS = FIXTURES / "corpus"
CONFIGS = FIXTURES / "configs"
RTOL = 1e-9

sys.path.insert(0, str(FIXTURES))
import mmpretrain_classes  # noqa: E402,F401  (registers MMPretrain's weight-decay scheduler and constructor)


def _register_mmpretrain_optimizers() -> None:
    """MMPretrain registers Lamb (a copy of timm's) and LARS; the param groups only need their defaults."""
    import timm.optim

    for name, cls in (("Lamb", timm.optim.Lamb), ("LARS", timm.optim.Lars)):
        if name not in OPTIMIZERS:
            OPTIMIZERS.register_module(name=name, module=cls)


_register_mmpretrain_optimizers()


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PORT = load_script("port_mmpretrain")
INSPECT = load_script("inspect_recipe")
PLOT = load_script("plot_schedule")


# What the corpus covers, each config with the timm model and the steps per epoch the check runs at.
CASES = {
    "chain_vit_keys": (CORPUS / "chain_vit_keys.py", (), 3),
    "swin_keys": (CORPUS / "swin_keys.py", (), 2),
    "resnet_v1d_keys": (CORPUS / "resnet_v1d_keys.py", (), 3),
    "convnext_keys": (CORPUS / "convnext_keys.py", (), 3),
    "sched_epoch": (CORPUS / "sched_epoch.py", (), 4),
    "sched_iter": (CORPUS / "sched_iter.py", (), 10),
    "layer_decay": (CORPUS / "layer_decay.py", (), 2),
    "no_timm_backbone --model": (CORPUS / "no_timm_backbone.py", ("--model", "resnet18"), 1),
    "pure_python format": (CORPUS / "pure_python" / "resnet18.py", (), 3),
    "deit-small": (CONFIGS / "deit" / "deit-small_4xb256_in1k.py", (), 1),
    "resnet50": (CONFIGS / "resnet" / "resnet50_8xb32_in1k.py", (), 1),
    "convnext-tiny": (CONFIGS / "convnext" / "convnext-tiny_32xb128_in1k.py", (), 1),
    "swin-tiny": (CONFIGS / "swin_transformer" / "swin-tiny_16xb64_in1k.py", (), 1),
}
SCHEDULES = sorted((CONFIGS / "_base_" / "schedules").glob("*.py"))
NEEDS_REAL_STEPS = {"imagenet_bs1024_linearlr_bn_nowd.py"}
"""Iteration windows past `epochs` steps (PolyLR from iteration 5000 of 300 epochs): compared at 20 steps
per epoch, where they fit (the dry run checks them at the fewest steps per epoch that fit)."""


def port(tmp_path: Path, config: Path, *args: str) -> tuple[Path, Ported]:
    out = tmp_path / f"{config.stem}.toml"
    assert PORT.main([str(config), "-o", str(out), *args]) == 0
    options = PortOptions(model=args[args.index("--model") + 1] if "--model" in args else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return out, port_config(config, options)


def inspect_json(tmp_path: Path, recipe: Path) -> dict:
    out = tmp_path / "params.json"
    assert INSPECT.main([str(recipe), "--json", str(out)]) == 0
    return json.loads(out.read_text())


def plot_json(tmp_path: Path, recipe: Path, steps_per_epoch: int) -> dict:
    out = tmp_path / "schedule.json"
    assert PLOT.main([str(recipe), "--steps-per-epoch", str(steps_per_epoch), "--json", str(out)]) == 0
    return json.loads(out.read_text())


class Shadow(nn.Module):
    """The timm model's parameters under MMPretrain's names; leaf modules keep their class (norm, conv)."""

    def __init__(self, model: nn.Module, renames: dict[str, str], depths: dict[str, list[int]] | None = None):
        super().__init__()
        self._depths = depths
        for prefix, module in model.named_modules():
            own = list(module.named_parameters(recurse=False))
            if not own:
                continue
            targets = [renames[f"{prefix}.{n}" if prefix else n] for n, _ in own]
            parents = {t.rpartition(".")[0] for t in targets}
            leaf = not any(True for child in module.children() for _ in child.parameters())
            same_attrs = all(t.rpartition(".")[2] == n for t, (n, _) in zip(targets, own, strict=True))
            if leaf and len(parents) == 1 and same_attrs:
                path = parents.pop()
                parent, _, last = path.rpartition(".")
                self._node(parent).add_module(last, module)
                continue
            for (attr, param), target in zip(own, targets, strict=True):
                parent, _, new_attr = target.rpartition(".")
                assert not isinstance(module, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm, nn.Conv2d))
                assert (attr == "bias") == (new_attr == "bias")
                self._node(parent).register_parameter(new_attr, param)

    def _node(self, path: str) -> nn.Module:
        node: nn.Module = self
        for part in path.split(".") if path else []:
            if part not in node._modules:
                node.add_module(part, nn.Module())
            node = node._modules[part]
            assert type(node) is nn.Module or part == path.split(".")[-1]
        return node

    def get_layer_depth(self, name: str) -> tuple[int, int]:
        """MMPretrain's ImageClassifier.get_layer_depth, from the depths its ViT gave (fixture)."""
        depth = self._depths[name]
        return depth[0], depth[1]


def mmengine_optimizer(config: Path, ported: Ported, depths: dict | None = None):
    """MMEngine's optim wrapper built from the original config on the ported timm model."""
    cfg = Config.fromfile(str(config), import_custom_modules=False)
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper.to_dict())
    wrapper_cfg["type"] = "OptimWrapper"  # AmpOptimWrapper needs CUDA; the param groups are the same
    for key in ("dtype", "loss_scale"):
        wrapper_cfg.pop(key, None)
    model = build_model(ported.recipe["model"], device="meta")
    target = model
    if ported.mmpretrain_names is not None:
        target = Shadow(model, ported.mmpretrain_names, depths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = build_optim_wrapper(target, wrapper_cfg)
    return cfg, wrapper, model


def group_of_param(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    index = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
    return {name: index[id(p)] for name, p in model.named_parameters() if id(p) in index}


def mmengine_curves(cfg, wrapper, steps_per_epoch: int, accumulate: int) -> dict[str, np.ndarray]:
    """Each group's lr/momentum/weight_decay in force at every optimizer step: MMEngine's schedulers built as
    Runner._build_param_scheduler builds them and stepped as ParamSchedulerHook steps them (per micro-batch
    and per epoch); an update happens on every `accumulate`-th micro-batch."""
    train = cfg.train_cfg
    by_epoch = train.get("by_epoch", train.get("type") != "IterBasedTrainLoop")
    epoch_length = steps_per_epoch * accumulate
    max_epochs = train["max_epochs"] if by_epoch else 1
    max_iters = max_epochs * epoch_length if by_epoch else train["max_iters"]
    entries = cfg.get("param_scheduler") or []
    entries = [entries] if isinstance(entries, dict) else entries
    optimizer = wrapper.optimizer
    schedulers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in copy.deepcopy([dict(e) for e in entries]):
            entry.setdefault("end", max_epochs if entry.get("by_epoch", True) else max_iters)
            schedulers.append(
                PARAM_SCHEDULERS.build(entry, default_args=dict(optimizer=wrapper, epoch_length=epoch_length))
            )
        rows: dict[str, list] = {"lr": [], "momentum": [], "weight_decay": []}
        for i in range(max_iters):
            if (i + 1) % accumulate == 0:
                for name in rows:
                    rows[name].append([_read(g, name) for g in optimizer.param_groups])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
            if by_epoch and (i + 1) % epoch_length == 0:
                for s in schedulers:
                    if s.by_epoch:
                        s.step()
    return {k: np.array(v, dtype=float).T for k, v in rows.items()}


def _read(group: dict, name: str) -> float:
    if name == "momentum":
        return group["betas"][0] if "betas" in group else group.get("momentum", 0.0)
    return group.get(name, 0.0)


def check_param_groups(config: Path, ported: Ported, described: dict, depths: dict | None = None) -> None:
    cfg, wrapper, model = mmengine_optimizer(config, ported, depths)
    groups = group_of_param(model, wrapper.optimizer)
    ours = {p["name"]: p for p in described["params"]}
    assert set(groups) == {n for n, p in ours.items() if p["group"] is not None}
    for name, index in groups.items():
        theirs = wrapper.optimizer.param_groups[index]
        assert ours[name]["lr"] == pytest.approx(theirs["lr"], rel=1e-12), name
        assert ours[name]["weight_decay"] == pytest.approx(theirs.get("weight_decay", 0.0), rel=1e-12), name


def check_schedule(config: Path, ported: Ported, described: dict, schedule: dict, spe: int) -> None:
    cfg, wrapper, model = mmengine_optimizer(config, ported)
    accumulate = ported.recipe["train"].get("accumulate", 1)
    theirs = mmengine_curves(cfg, wrapper, spe, accumulate)
    groups = group_of_param(model, wrapper.optimizer)
    ours_group = {
        p["name"]: schedule["group_names"].index(p["group"]) for p in described["params"] if p["group"]
    }
    assert schedule["total_steps"] == theirs["lr"].shape[1]
    for param in ("lr", "momentum", "weight_decay"):
        if not schedule.get(param):
            continue
        for name, index in groups.items():
            got = np.array(schedule[param][ours_group[name]])
            np.testing.assert_allclose(
                got, theirs[param][index], rtol=RTOL, atol=1e-15, err_msg=f"{param} {name}"
            )


@pytest.mark.parametrize("case", CASES, ids=CASES)
def test_param_groups_and_schedule_equal_mmengine(tmp_path, case):
    config, args, spe = CASES[case]
    recipe, ported = port(tmp_path, config, *args)
    described = inspect_json(tmp_path, recipe)
    depths = None
    if case == "layer_decay":
        depths = _vit_depths(ported)
    check_param_groups(config, ported, described, depths)
    if case != "layer_decay":
        check_schedule(config, ported, described, plot_json(tmp_path, recipe, spe), spe)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=[p.name for p in SCHEDULES])
def test_every_mmpretrain_base_schedule_ports_and_equals_mmengine(tmp_path, schedule, capsys):
    steps_per_epoch = 20 if schedule.name in NEEDS_REAL_STEPS else 2
    recipe, ported = port(tmp_path, schedule, "--model", "resnet18")
    described = inspect_json(tmp_path, recipe)
    check_param_groups(schedule, ported, described)
    plotted = plot_json(tmp_path, recipe, steps_per_epoch)
    check_schedule(schedule, ported, described, plotted, steps_per_epoch)


def _vit_depths(ported: Ported) -> dict[str, list[int]]:
    """MMPretrain's get_layer_depth of each parameter, as its ViT computes it (tests/fixtures/.../vit_avg)."""
    fixture = json.loads((FIXTURES / "param_names" / "vit_avg.json").read_text())
    return {p["name"]: p["layer_depth"] for p in fixture["params"]}


def flatten(value, prefix=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, (*prefix, k))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            yield from flatten(v, (*prefix, i))
    else:
        yield prefix, value


HAND_PORTED = {
    "deit-small": ("deit/deit-small_4xb256_in1k.py", "vit_adamw.toml", {("data", "eval_batch_size")}),
    "swin-tiny": ("swin_transformer/swin-tiny_16xb64_in1k.py", "swin_tiny_imagenet_bs1024_adamw.toml", set()),
    "convnext-tiny": (
        "convnext/convnext-tiny_32xb128_in1k.py",
        "convnext_tiny.toml",
        {("data", "eval_batch_size")},
    ),
    "resnet50": ("resnet/resnet50_8xb32_in1k.py", "resnet50_imagenet_bs256.toml", set()),
}


@pytest.mark.parametrize("name", HAND_PORTED, ids=HAND_PORTED)
def test_port_equals_the_hand_ported_recipe_in_every_shared_key(tmp_path, name):
    config, hand_recipe, extra = HAND_PORTED[name]
    recipe, _ = port(tmp_path, CONFIGS / config)
    ported = dict(flatten(tomllib.loads(recipe.read_text())))
    hand = dict(flatten(load_recipe(ROOT / "recipes" / hand_recipe).cfg))
    shared = sorted(set(ported) & set(hand), key=str)
    assert len(shared) > 25
    assert {k: ported[k] for k in shared} == {k: hand[k] for k in shared}
    # only the port writes the source's eval batch where it differs, and intervals the hand recipes leave at
    # their default (the same value)
    assert set(ported) - set(hand) == {("eval", "interval"), ("checkpoint", "interval"), *extra}
    assert (ported[("eval", "interval")], ported[("checkpoint", "interval")]) == (1, 1)
