"""Schedules against MMEngine 0.10.7 itself, its schedulers stepped as its ParamSchedulerHook does."""

from __future__ import annotations

import copy
import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.errors import RecipeError
from trainer.schedule import build_schedule

mmengine = pytest.importorskip("mmengine", minversion="0.10.7")
from mmengine.registry import PARAM_SCHEDULERS  # noqa: E402

RTOL = 1e-9


def torch_optimizer(kind: str, groups: list[dict]) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], **g} for g in groups]
    return getattr(torch.optim, kind)(params)


def mmengine_run(
    entries,
    groups,
    *,
    optimizer="SGD",
    steps_per_epoch,
    epochs=None,
    max_steps=None,
    param="lr",
    val_metrics=None,
):
    """Values in force during every iteration, per group: MMEngine schedulers built as
    `Runner._build_param_scheduler` builds them and stepped as `ParamSchedulerHook` steps them."""
    import mmengine.optim  # noqa: F401  (registers the schedulers)

    opt = torch_optimizer(optimizer, copy.deepcopy(groups))
    max_epochs = epochs if epochs is not None else 1
    max_iters = epochs * steps_per_epoch if epochs is not None else max_steps
    schedulers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg in copy.deepcopy(entries):
            cfg.setdefault("end", max_epochs if cfg.get("by_epoch", True) else max_iters)
            schedulers.append(
                PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=opt, epoch_length=steps_per_epoch))
            )
        rows = []
        for i in range(max_iters):
            rows.append([_read(g, param) for g in opt.param_groups])
            opt.step()
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
            if (i + 1) % steps_per_epoch == 0:
                for s in schedulers:
                    if s.by_epoch:
                        s.step()
                if val_metrics is not None:
                    epoch = (i + 1) // steps_per_epoch - 1
                    for s in schedulers:
                        if getattr(s, "need_val_args", False):
                            s.step({"loss": val_metrics[epoch]})
    return np.array(rows).T


def _read(group: dict, param: str) -> float:
    if param == "momentum" and "momentum" not in group:
        return group["betas"][0]
    if param == "momentum" and "betas" in group:
        return group["betas"][0]
    return group[param]


def ours(entries, groups, *, optimizer="SGD", steps_per_epoch, epochs=None, max_steps=None, param="lr"):
    opt = torch_optimizer(optimizer, copy.deepcopy(groups))
    train = {"epochs": epochs} if epochs is not None else {"max_steps": max_steps}
    schedule = build_schedule(
        copy.deepcopy(entries),
        param_groups=opt.param_groups,
        steps_per_epoch=steps_per_epoch,
        train_cfg=train,
    )
    return schedule.curve(param), schedule


def assert_same_curve(entries, groups=({"lr": 0.1, "momentum": 0.9},), **kw):
    expected = mmengine_run(entries, list(groups), **kw)
    got, _ = ours(entries, list(groups), **kw)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0)


SGD = ({"lr": 0.1, "momentum": 0.9},)
ALONE = {
    "ConstantLR": dict(type="ConstantLR", factor=0.5, by_epoch=False, begin=3, end=17),
    "LinearLR": dict(type="LinearLR", start_factor=0.05, end_factor=0.8, by_epoch=False, end=23),
    "StepLR": dict(type="StepLR", step_size=4, gamma=0.5, by_epoch=False, begin=2),
    "MultiStepLR": dict(type="MultiStepLR", milestones=[3, 9, 20], gamma=0.3, by_epoch=False, begin=5),
    "ExponentialLR": dict(type="ExponentialLR", gamma=0.93, by_epoch=False),
    "CosineAnnealingLR eta_min": dict(
        type="CosineAnnealingLR", eta_min=0.01, by_epoch=False, begin=4, end=40
    ),
    "CosineAnnealingLR eta_min_ratio": dict(type="CosineAnnealingLR", eta_min_ratio=0.1, by_epoch=False),
    "CosineAnnealingLR periodic": dict(type="CosineAnnealingLR", T_max=7, eta_min=0.02, by_epoch=False),
    "PolyLR": dict(type="PolyLR", eta_min=0.001, power=2.0, by_epoch=False, begin=1, end=30),
    "OneCycleLR cos": dict(type="OneCycleLR", eta_max=0.3, by_epoch=False, pct_start=0.25),
    "OneCycleLR three-phase linear": dict(
        type="OneCycleLR",
        eta_max=0.3,
        total_steps=50,
        three_phase=True,
        anneal_strategy="linear",
        by_epoch=False,
        end=45,
    ),
    "CosineRestartLR": dict(
        type="CosineRestartLR",
        periods=[10, 15, 12],
        restart_weights=[1, 0.6, 0.3],
        eta_min=0.001,
        by_epoch=False,
    ),
    "CosineRestartLR ratio": dict(
        type="CosineRestartLR", periods=[20, 20], restart_weights=[1, 0.5], eta_min_ratio=0.05, by_epoch=False
    ),
    "StepLR by_epoch": dict(type="StepLR", step_size=2, gamma=0.5),
    "CosineAnnealingLR by_epoch": dict(type="CosineAnnealingLR", begin=1, eta_min=0.001),
    "LinearLR by_epoch converted": dict(
        type="LinearLR", start_factor=0.01, end=2.5, convert_to_iter_based=True
    ),
    "PolyLR by_epoch converted": dict(type="PolyLR", power=0.9, begin=1, convert_to_iter_based=True),
    "CosineRestartLR by_epoch converted": dict(
        type="CosineRestartLR",
        periods=[1.5, 3],
        restart_weights=[1, 0.5],
        eta_min=0.0,
        convert_to_iter_based=True,
    ),
    "OneCycleLR by_epoch converted": dict(
        type="OneCycleLR", eta_max=0.2, total_steps=5, end=5, convert_to_iter_based=True
    ),
    "ConstantLR by_epoch": dict(type="ConstantLR", factor=0.25, end=4),
    "ExponentialLR by_epoch": dict(type="ExponentialLR", gamma=0.8, begin=2),
    "MultiStepLR by_epoch converted fractional": dict(
        type="MultiStepLR", milestones=[1.5, 4], convert_to_iter_based=True
    ),
    "generic lr": dict(type="CosineAnnealingParamScheduler", param_name="lr", eta_min=0.005, by_epoch=False),
}


@pytest.mark.parametrize("entry", ALONE.values(), ids=ALONE.keys())
def test_each_lr_scheduler_alone_equals_mmengine(entry):
    assert_same_curve([entry], SGD, steps_per_epoch=10, epochs=6)


MOMENTUM = {
    "ConstantMomentum": dict(type="ConstantMomentum", factor=0.9, by_epoch=False, end=12),
    "LinearMomentum": dict(type="LinearMomentum", start_factor=0.85, by_epoch=False, end=25),
    "StepMomentum": dict(type="StepMomentum", step_size=2, gamma=0.95),
    "MultiStepMomentum": dict(type="MultiStepMomentum", milestones=[7, 30], gamma=0.9, by_epoch=False),
    "ExponentialMomentum": dict(type="ExponentialMomentum", gamma=0.99, by_epoch=False),
    "CosineAnnealingMomentum": dict(type="CosineAnnealingMomentum", eta_min=0.95, by_epoch=False),
    "PolyMomentum": dict(type="PolyMomentum", eta_min=0.5, by_epoch=False, end=40),
    "CosineRestartMomentum": dict(
        type="CosineRestartMomentum", periods=[20, 40], eta_min=0.8, restart_weights=[1, 1], by_epoch=False
    ),
    "generic momentum": dict(
        type="LinearParamScheduler", param_name="momentum", start_factor=0.5, by_epoch=False, end=10
    ),
}


@pytest.mark.parametrize("entry", MOMENTUM.values(), ids=MOMENTUM.keys())
def test_each_momentum_scheduler_on_sgd_equals_mmengine(entry):
    assert_same_curve([entry], SGD, steps_per_epoch=10, epochs=6, param="momentum")


@pytest.mark.parametrize("entry", MOMENTUM.values(), ids=MOMENTUM.keys())
def test_each_momentum_scheduler_on_adamw_betas_equals_mmengine(entry):
    if entry["type"].endswith("ParamScheduler"):
        pytest.skip("MMEngine's generic form needs a `momentum` key, which Adam groups lack")
    groups = ({"lr": 1e-3, "betas": (0.9, 0.999)}, {"lr": 1e-4, "betas": (0.95, 0.99)})
    assert_same_curve([entry], groups, optimizer="AdamW", steps_per_epoch=10, epochs=6, param="momentum")


def test_generic_scheduler_on_weight_decay_equals_mmengine():
    entry = dict(type="CosineAnnealingParamScheduler", param_name="weight_decay", eta_min=0.0, by_epoch=False)
    groups = ({"lr": 0.1, "weight_decay": 0.05}, {"lr": 0.1, "weight_decay": 0.0})
    assert_same_curve([entry], groups, optimizer="AdamW", steps_per_epoch=10, epochs=3, param="weight_decay")


def test_seed_example_warmup_50_iterations_then_multistep_by_epoch_equals_mmengine():
    entries = [
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, end=50),
        dict(type="MultiStepLR", by_epoch=True, milestones=[8, 11], gamma=0.1),
    ]
    assert_same_curve(entries, SGD, steps_per_epoch=100, epochs=12)


def test_seed_example_warmup_10_epochs_converted_then_cosine_equals_mmengine():
    entries = [
        dict(type="LinearLR", start_factor=0.001, by_epoch=True, end=10, convert_to_iter_based=True),
        dict(type="CosineAnnealingLR", by_epoch=True, begin=10),
    ]
    assert_same_curve(entries, SGD, steps_per_epoch=37, epochs=20)


def test_gap_between_schedulers_holds_the_value_like_mmengine():
    entries = [
        dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=30),
        dict(type="CosineAnnealingLR", by_epoch=False, begin=50, end=90, eta_min=0.001),
    ]
    assert_same_curve(entries, SGD, steps_per_epoch=20, epochs=6)


@pytest.mark.parametrize("order", [1, -1])
def test_overlapping_affine_schedulers_compose_in_list_order_like_mmengine(order):
    entries = [
        dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=40),
        dict(type="CosineAnnealingLR", by_epoch=False, eta_min=0.05),
        dict(type="MultiStepLR", milestones=[2, 4], gamma=0.5),
    ][::order]
    assert_same_curve(entries, SGD, steps_per_epoch=20, epochs=6)


def test_epoch_and_iteration_schedulers_meeting_at_an_epoch_boundary_follow_hook_order():
    entries = [
        dict(type="CosineAnnealingLR", eta_min=0.02, begin=2),
        dict(type="PolyLR", eta_min=0.01, by_epoch=False, begin=20, end=60),
        dict(type="LinearLR", start_factor=0.5, by_epoch=False, begin=40),
    ]
    assert_same_curve(entries, SGD, steps_per_epoch=10, epochs=8)


def test_per_group_multipliers_are_kept_under_every_scheduler_like_mmengine():
    groups = ({"lr": 0.1, "momentum": 0.9}, {"lr": 0.01, "momentum": 0.9}, {"lr": 0.003, "momentum": 0.8})
    entries = [
        dict(type="LinearLR", start_factor=0.01, by_epoch=False, end=15),
        dict(type="CosineAnnealingLR", eta_min_ratio=0.1, by_epoch=False, begin=15, end=50),
        dict(type="CosineRestartLR", periods=[10], eta_min=0.0005, by_epoch=False, begin=50),
    ]
    assert_same_curve(entries, groups, steps_per_epoch=10, epochs=7)
    assert_same_curve(
        [dict(type="CosineAnnealingMomentum", eta_min=0.85, by_epoch=False)],
        groups,
        steps_per_epoch=10,
        epochs=7,
        param="momentum",
    )


def test_schedulers_after_onecycle_use_its_overwritten_initial_lr_like_mmengine():
    entries = [
        dict(type="OneCycleLR", eta_max=0.5, by_epoch=False, end=40),
        dict(type="CosineAnnealingLR", eta_min_ratio=0.2, by_epoch=False, begin=40),
    ]
    assert_same_curve(
        entries, ({"lr": 0.1, "momentum": 0.9}, {"lr": 0.02, "momentum": 0.9}), steps_per_epoch=10, epochs=7
    )


def test_max_steps_training_with_iteration_schedulers_equals_mmengine_iter_loop():
    entries = [
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, end=100),
        dict(type="CosineAnnealingLR", T_max=800, by_epoch=False, begin=100, end=900),
    ]
    assert_same_curve(entries, SGD, steps_per_epoch=1000, max_steps=1000)


def test_reduce_on_plateau_with_reported_metrics_equals_mmengine():
    entries = [
        dict(type="LinearLR", start_factor=0.2, by_epoch=False, end=25),
        dict(type="ReduceOnPlateauLR", patience=1, factor=0.5, cooldown=1, min_value=0.02),
        dict(type="ExponentialLR", gamma=0.99, by_epoch=False, begin=30),
    ]
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
    groups = ({"lr": 0.1, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.9})
    spe, epochs = 10, 12
    expected = mmengine_run(entries, list(groups), steps_per_epoch=spe, epochs=epochs, val_metrics=losses)
    _, schedule = ours(entries, list(groups), steps_per_epoch=spe, epochs=epochs)
    got = np.zeros_like(expected)
    for step in range(spe * epochs):
        if step and step % spe == 0:
            schedule.report_metric("loss", losses[step // spe - 1], step)
        got[:, step] = [v["lr"] for v in schedule.values(step)]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0)
    assert got[0, -1] < got[0, 30]  # it did reduce


VECTORS = json.loads((Path(__file__).resolve().parent / "data" / "mmengine_vectors.json").read_text())
"""Values recorded from MMEngine's own Runner by scripts/make_reference_vectors.py."""
RUNNER_VECTORS = {
    name: vector
    for name, vector in VECTORS["schedule_vectors"].items()
    if vector["accumulative_counts"] == 1 and not name.startswith("V17")  # V14, V17: not our semantics
}


@pytest.mark.parametrize("name", RUNNER_VECTORS)
def test_mmengine_oracle_reproduces_the_runner_vectors(name):
    """The oracle above (schedulers stepped as ParamSchedulerHook steps them, no Runner) is MMEngine's Runner:
    every recorded value of every vector, every group and parameter."""
    vector = RUNNER_VECTORS[name]
    group = {k: v for k, v in vector["optimizer"].items() if k != "type"}
    groups = [group, {**group, "lr": group["lr"] * 0.1}] if vector["paramwise_cfg"] else [group]
    recorded = vector["recorded"][-1]  # V13b records betas then momentum: momentum is betas[0]
    param = "momentum" if "momentum" in recorded else "lr"
    length = {"epochs": vector["max_epochs"]} if vector["max_epochs"] else {"max_steps": vector["max_iters"]}
    rows = mmengine_run(
        vector["param_scheduler"],
        groups,
        optimizer=vector["optimizer"]["type"],
        steps_per_epoch=vector["epoch_length"],
        param=param,
        **length,
    )
    assert rows.shape[1] == vector["total_iterations_recorded"]
    for step, value in vector["values_at_iteration"].items():
        expected = value[-1:] if "betas" in vector["recorded"][0] else np.atleast_1d(value)
        assert rows[:, int(step)] == pytest.approx(expected, rel=RTOL, abs=0), step
    if "all_values" in vector:
        assert rows[0] == pytest.approx(vector["all_values"], rel=RTOL, abs=0)


def _random_entry(rng: random.Random, epochs: int, steps_per_epoch: int) -> dict:
    kind = rng.choice(
        [
            "ConstantLR",
            "LinearLR",
            "StepLR",
            "MultiStepLR",
            "ExponentialLR",
            "CosineAnnealingLR",
            "PolyLR",
            "CosineRestartLR",
        ]
    )
    by_epoch = rng.random() < 0.5
    entry: dict = {"type": kind, "by_epoch": by_epoch}
    if by_epoch and rng.random() < 0.5:
        entry["convert_to_iter_based"] = True
    limit = epochs if by_epoch else epochs * steps_per_epoch
    begin = rng.randrange(0, limit // 2)
    if rng.random() < 0.7:
        entry["begin"] = begin
    else:
        begin = 0
    if rng.random() < 0.6:
        entry["end"] = rng.randrange(begin + 2, limit + 1)
    end = entry.get("end", limit)
    extra = {
        "ConstantLR": lambda: {"factor": rng.uniform(0.1, 1)},
        "LinearLR": lambda: {"start_factor": rng.uniform(0.01, 1), "end_factor": rng.uniform(0.3, 1)},
        "StepLR": lambda: {"step_size": rng.randrange(1, 4), "gamma": rng.uniform(0.3, 0.9)},
        "MultiStepLR": lambda: {
            "milestones": sorted(rng.sample(range(0, end - begin), min(2, end - begin))),
            "gamma": rng.uniform(0.1, 0.9),
        },
        "ExponentialLR": lambda: {"gamma": rng.uniform(0.9, 1.0)},
        "CosineAnnealingLR": lambda: rng.choice(
            [
                {},
                {"eta_min": rng.uniform(0, 0.05)},
                {"eta_min_ratio": rng.uniform(0, 0.5)},
                {"T_max": rng.randrange(1, 8), "eta_min": 0.01},
            ]
        ),
        "PolyLR": lambda: {"eta_min": rng.uniform(0, 0.01), "power": rng.uniform(0.5, 2)},
        "CosineRestartLR": lambda: {
            "periods": [rng.randrange(1, 6), rng.randrange(1, 6)],
            "restart_weights": [1.0, rng.uniform(0.2, 1)],
            **rng.choice([{"eta_min": 0.001}, {"eta_min_ratio": 0.1}]),
        },
    }[kind]()
    entry.update(extra)
    return entry


@pytest.mark.parametrize("seed", range(40))
def test_random_chains_of_schedulers_equal_mmengine(seed):
    """_random_entry draws only valid entries (windows inside the run, milestones inside their window), so
    every chain must build: a RecipeError here is a valid schedule wrongly rejected, and fails the test.
    What we reject on purpose where MMEngine accepts is asserted below, case by case."""
    rng = random.Random(seed)
    epochs = 8
    spe = rng.choice([1, 3, 10, 10])
    entries = [_random_entry(rng, epochs, spe) for _ in range(rng.randrange(1, 4))]
    groups = [{"lr": 0.1, "momentum": 0.9}, {"lr": rng.uniform(0.001, 0.1), "momentum": 0.9}]
    assert_same_curve(entries, groups, steps_per_epoch=spe, epochs=epochs)


STRICTER_THAN_MMENGINE = {
    # MMEngine builds and runs each of these; what it then does is (almost certainly) not what was meant.
    "milestone past the end never fires": (
        [dict(type="MultiStepLR", milestones=[3, 9], gamma=0.1)],
        "schedule[0].milestones",
        "milestone 9 is not before the end",
    ),
    "milestone counted from begin lands past the end": (
        [dict(type="MultiStepLR", begin=4, milestones=[2, 5], gamma=0.1)],
        "schedule[0].milestones",
        "(epoch 9: milestones count from begin = 4)",
    ),
    "end past the last epoch stretches the curve beyond the run": (
        [dict(type="CosineAnnealingLR", end=12)],
        "schedule[0].end",
        "beyond the last epoch",
    ),
    "two OneCycles overwrite each other's lr range": (
        [
            dict(type="OneCycleLR", eta_max=0.1, by_epoch=False, end=40),
            dict(type="OneCycleLR", eta_max=0.2, by_epoch=False, begin=40),
        ],
        "schedule[1].type",
        "second OneCycle",
    ),
}


@pytest.mark.parametrize("case", STRICTER_THAN_MMENGINE.values(), ids=STRICTER_THAN_MMENGINE.keys())
def test_chains_mmengine_runs_but_we_reject_on_purpose(case):
    entries, key, fragment = case
    groups = [{"lr": 0.1, "momentum": 0.9}]
    mmengine_run(entries, groups, steps_per_epoch=10, epochs=8)  # MMEngine accepts the chain
    with pytest.raises(RecipeError) as info:
        ours(entries, groups, steps_per_epoch=10, epochs=8)
    assert info.value.key == key and fragment in info.value.message


SEED_RECIPES = {
    "warmup 50 iterations + MultiStepLR by epoch": """
        [[schedule]]
        type = "LinearLR"
        start_factor = 0.001
        by_epoch = false
        end = 50

        [[schedule]]
        type = "MultiStepLR"
        by_epoch = true
        milestones = [8, 11]
        gamma = 0.1
    """,
    "warmup 10 epochs converted + cosine from epoch 10": """
        [[schedule]]
        type = "LinearLR"
        start_factor = 0.001
        by_epoch = true
        end = 10
        convert_to_iter_based = true

        [[schedule]]
        type = "CosineAnnealingLR"
        by_epoch = true
        begin = 10
    """,
}


@pytest.mark.parametrize("schedule", SEED_RECIPES.values(), ids=SEED_RECIPES.keys())
def test_seed_examples_as_recipes_equal_mmengine_for_every_param_group(tmp_path, schedule):
    import textwrap

    from trainer.model import build_model
    from trainer.optim import build_optimizer
    from trainer.recipe.load import load_recipe

    head = """
        [model]
        name = "test_resnet"
        num_classes = 10
        [data]
        path = "data/digits"
        batch_size = 32
        [train]
        epochs = 20
        [optimizer]
        type = "SGD"
        lr = 0.1
        momentum = 0.9
        weight_decay = 1e-4
        [paramwise]
        norm_decay_mult = 0.0
        [paramwise.rules]
        "fc.*" = { lr_mult = 0.5 }
    """
    path = tmp_path / "seed.toml"
    path.write_text(textwrap.dedent(head) + textwrap.dedent(schedule))
    cfg = load_recipe(path).cfg
    optimizer = build_optimizer(build_model(cfg["model"], device="meta"), cfg["optimizer"], cfg["paramwise"])
    groups = [{k: v for k, v in g.items() if k in ("lr", "momentum")} for g in optimizer.param_groups]
    assert len({g["lr"] for g in groups}) == 2
    spe = 23
    built = build_schedule(
        cfg["schedule"], param_groups=optimizer.param_groups, steps_per_epoch=spe, train_cfg=cfg["train"]
    )
    expected = mmengine_run(cfg["schedule"], groups, steps_per_epoch=spe, epochs=cfg["train"]["epochs"])
    np.testing.assert_allclose(built.curve("lr"), expected, rtol=RTOL, atol=0)
