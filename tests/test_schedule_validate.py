"""Every bad [[schedule]] entry is a one-line RecipeError naming `schedule[i].<arg>` and what is allowed."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from trainer.errors import RecipeError
from trainer.recipe.load import load_recipe
from trainer.schedule import (
    Arg,
    ParamScheduler,
    StepMaps,
    build_schedule,
    register_scheduler,
    validate_schedule,
)
from trainer.schedule.validate import parse_schedule

EPOCHS = {"epochs": 10}
STEPS = {"max_steps": 500}
SGD = [{"lr": 0.1, "momentum": 0.9}]

CASES = {
    "unknown type": (
        [{"type": "CosineAnealingLR"}],
        EPOCHS,
        "schedule[0].type",
        "did you mean 'CosineAnnealingLR'",
    ),
    "missing type": ([{"end": 3}], EPOCHS, "schedule[0].type", "required"),
    "entry not a table": (["LinearLR"], EPOCHS, "schedule[0]", "expected a table"),
    "unknown argument": (
        [{"type": "StepLR", "step_size": 2, "gama": 0.5}],
        EPOCHS,
        "schedule[0].gama",
        "did you mean 'gamma'",
    ),
    "argument of another type": (
        [{"type": "LinearLR", "param_name": "lr"}],
        EPOCHS,
        "schedule[0].param_name",
        "unknown argument for LinearLR",
    ),
    "last_step": ([{"type": "LinearLR", "last_step": 3}], EPOCHS, "schedule[0].last_step", "not supported"),
    "missing required": ([{"type": "StepLR"}], EPOCHS, "schedule[0].step_size", "StepLR needs `step_size`"),
    "generic without param_name": (
        [{"type": "LinearParamScheduler"}],
        EPOCHS,
        "schedule[0].param_name",
        "needs",
    ),
    "string for a number": (
        [{"type": "StepLR", "step_size": 2, "gamma": "0.5"}],
        EPOCHS,
        "schedule[0].gamma",
        "expected a number",
    ),
    "bool for a number": (
        [{"type": "ExponentialLR", "gamma": True}],
        EPOCHS,
        "schedule[0].gamma",
        "expected a number",
    ),
    "fractional epochs unconverted": (
        [{"type": "LinearLR", "end": 2.5}],
        EPOCHS,
        "schedule[0].end",
        "fractional epochs need convert_to_iter_based",
    ),
    "bool by_epoch": ([{"type": "LinearLR", "by_epoch": 1}], EPOCHS, "schedule[0].by_epoch", "true or false"),
    "convert without by_epoch": (
        [{"type": "LinearLR", "by_epoch": False, "end": 5, "convert_to_iter_based": True}],
        EPOCHS,
        "schedule[0].convert_to_iter_based",
        "only by_epoch = true",
    ),
    "begin equals end": (
        [{"type": "LinearLR", "begin": 5, "end": 5}],
        EPOCHS,
        "schedule[0].end",
        "must be after begin",
    ),
    "negative begin": (
        [{"type": "LinearLR", "begin": -1, "by_epoch": False}],
        EPOCHS,
        "schedule[0].begin",
        ">= 0",
    ),
    "end beyond last epoch": (
        [{"type": "CosineAnnealingLR", "end": 12}],
        EPOCHS,
        "schedule[0].end",
        "beyond the last epoch",
    ),
    "begin at last epoch": (
        [{"type": "CosineAnnealingLR", "begin": 10}],
        EPOCHS,
        "schedule[0].begin",
        "never act",
    ),
    "milestone beyond last epoch": (
        [{"type": "MultiStepLR", "milestones": [8, 11]}],
        EPOCHS,
        "schedule[0].milestones",
        "milestone 11 is not before the end (10 epochs",
    ),
    "milestone counted from begin": (
        [{"type": "MultiStepLR", "begin": 4, "milestones": [3, 6]}],
        EPOCHS,
        "schedule[0].milestones",
        "(epoch 10: milestones count from begin = 4)",
    ),
    "unsorted milestones": (
        [{"type": "MultiStepLR", "milestones": [6, 3]}],
        EPOCHS,
        "schedule[0].milestones",
        "strictly increasing",
    ),
    "repeated milestones": (
        [{"type": "MultiStepLR", "milestones": [3, 3]}],
        EPOCHS,
        "schedule[0].milestones",
        "strictly increasing",
    ),
    "epoch scheduler in max_steps training": (
        [{"type": "CosineAnnealingLR"}],
        STEPS,
        "schedule[0].by_epoch",
        "max_steps",
    ),
    "eta_min and eta_min_ratio": (
        [{"type": "CosineAnnealingLR", "eta_min": 0.0, "eta_min_ratio": 0.1}],
        EPOCHS,
        "schedule[0].eta_min_ratio",
        "not both",
    ),
    "restart without eta_min": (
        [{"type": "CosineRestartLR", "periods": [5]}],
        EPOCHS,
        "schedule[0].eta_min",
        "give eta_min",
    ),
    "restart weights length": (
        [{"type": "CosineRestartLR", "periods": [3, 3], "eta_min": 0.0}],
        EPOCHS,
        "schedule[0].restart_weights",
        "one weight per period",
    ),
    "linear start_factor 0": (
        [{"type": "LinearLR", "start_factor": 0.0}],
        EPOCHS,
        "schedule[0].start_factor",
        "(0, 1]",
    ),
    "linear start_factor above 1": (
        [{"type": "LinearLR", "start_factor": 1.5}],
        EPOCHS,
        "schedule[0].start_factor",
        "(0, 1]",
    ),
    "constant factor 0": ([{"type": "ConstantLR", "factor": 0.0}], EPOCHS, "schedule[0].factor", "(0, 1]"),
    "step_size 0": ([{"type": "StepLR", "step_size": 0}], EPOCHS, "schedule[0].step_size", "> 0"),
    "onecycle pct_start 1": (
        [{"type": "OneCycleLR", "eta_max": 0.1, "pct_start": 1}],
        EPOCHS,
        "schedule[0].pct_start",
        "between 0 and 1",
    ),
    "onecycle three-phase pct_start": (
        [{"type": "OneCycleLR", "eta_max": 0.1, "pct_start": 0.7, "three_phase": True}],
        EPOCHS,
        "schedule[0].pct_start",
        "<= 0.5",
    ),
    "onecycle strategy": (
        [{"type": "OneCycleLR", "eta_max": 0.1, "anneal_strategy": "cosine"}],
        EPOCHS,
        "schedule[0].anneal_strategy",
        "allowed: 'cos', 'linear'",
    ),
    "two onecycles": (
        [
            {"type": "OneCycleLR", "eta_max": 0.1, "end": 5},
            {"type": "OneCycleLR", "eta_max": 0.1, "begin": 5},
        ],
        EPOCHS,
        "schedule[1].type",
        "second OneCycle",
    ),
    "plateau by iteration": (
        [{"type": "ReduceOnPlateauLR", "by_epoch": False}],
        EPOCHS,
        "schedule[0].by_epoch",
        "must be true",
    ),
    "plateau converted": (
        [{"type": "ReduceOnPlateauLR", "convert_to_iter_based": True}],
        EPOCHS,
        "schedule[0].convert_to_iter_based",
        "cannot be converted",
    ),
    "plateau rule": (
        [{"type": "ReduceOnPlateauLR", "rule": "lower"}],
        EPOCHS,
        "schedule[0].rule",
        "allowed: 'less', 'greater'",
    ),
    "plateau factor": (
        [{"type": "ReduceOnPlateauLR", "factor": 1.0}],
        EPOCHS,
        "schedule[0].factor",
        "(0, 1)",
    ),
    "plateau min_value list": (
        [{"type": "ReduceOnPlateauLR", "min_value": [0.0, 0.1]}],
        EPOCHS,
        "schedule[0].min_value",
        "expected a number",
    ),
    "error in the second entry": (
        [{"type": "LinearLR", "end": 1}, {"type": "PolyLR", "power": -1.0}],
        EPOCHS,
        "schedule[1].power",
        "> 0",
    ),
    "no training length": ([], {}, "train", "train.epochs or train.max_steps"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_entry_is_a_recipe_error_with_its_key_path(case):
    entries, train, key, fragment = case
    with pytest.raises(RecipeError) as info:
        validate_schedule(entries, train)
    assert info.value.key == key
    assert fragment in info.value.message
    assert "\n" not in str(info.value)


def test_valid_entries_pass_validation_and_build_as_written():
    by_epoch = [
        {"type": "LinearLR", "start_factor": 0.001, "end": 0.5, "convert_to_iter_based": True},
        {"type": "CosineAnnealingLR", "begin": 1, "eta_min_ratio": 0.01},
        {"type": "MultiStepMomentum", "milestones": [3, 6], "gamma": 0.9},
        {"type": "ReduceOnPlateauLR", "patience": 2},
    ]
    by_step = [
        {"type": "LinearLR", "by_epoch": False, "end": 100},
        {"type": "CosineAnnealingLR", "begin": 1, "convert_to_iter_based": True},
        {"type": "ReduceOnPlateauLR"},
    ]
    assert validate_schedule(by_epoch, EPOCHS, hyperparams=["lr", "momentum"], optimizer_name="SGD") is None
    assert validate_schedule(by_step, STEPS) is None
    parsed = parse_schedule(by_epoch, EPOCHS)  # what validation checked, defaults filled in
    assert [(e.cls.__name__, e.cls.param) for e in parsed] == [
        ("LinearLR", "lr"),
        ("CosineAnnealingLR", "lr"),
        ("MultiStepMomentum", "momentum"),
        ("ReduceOnPlateauLR", "lr"),
    ]
    assert parsed[0].args["end"] == 0.5 and parsed[0].converted and parsed[0].args["end_factor"] == 1.0
    assert parsed[1].epoch_stepped and parsed[1].args["end"] is None  # to the end of training
    assert parsed[3].args["patience"] == 2 and parsed[3].args["factor"] == 0.1  # MMEngine's default
    schedule = build_schedule(by_epoch, param_groups=SGD, steps_per_epoch=10, train_cfg=EPOCHS)
    assert schedule.values(0)[0]["lr"] == pytest.approx(1e-4)  # 0.1 x start_factor
    assert schedule.values(5)[0]["lr"] == pytest.approx(0.1)  # warm-up over after half an epoch (5 steps)
    assert [schedule.values(s)[0]["momentum"] for s in (29, 30, 60)] == pytest.approx([0.9, 0.81, 0.729])
    steps = build_schedule(by_step, param_groups=SGD, steps_per_epoch=10, train_cfg=STEPS)
    assert steps.total_steps == 500 and steps.values(0)[0]["lr"] == pytest.approx(0.1 / 3)


BUILD_CASES = {
    "iteration begin beyond training": (
        [{"type": "LinearLR", "by_epoch": False, "begin": 600}],
        STEPS,
        "schedule[0].begin",
        "not before the end of training (500 steps)",
    ),
    "iteration milestone beyond training": (
        [{"type": "MultiStepLR", "by_epoch": False, "milestones": [100, 600]}],
        STEPS,
        "schedule[0].milestones",
        "it would never apply",
    ),
    "converted window shorter than a step": (
        [{"type": "LinearLR", "end": 0.001, "convert_to_iter_based": True}],
        EPOCHS,
        "schedule[0].end",
        "[0, 0) steps at 10 steps/epoch: empty",
    ),
    "converted milestone between steps": (
        [{"type": "MultiStepLR", "milestones": [1.55], "convert_to_iter_based": True}],
        EPOCHS,
        "schedule[0].milestones",
        "not a whole step",
    ),
    "onecycle window longer than cycle": (
        [{"type": "OneCycleLR", "eta_max": 0.1, "total_steps": 100, "by_epoch": False}],
        STEPS,
        "schedule[0].total_steps",
        "the cycle has 100 steps",
    ),
    "onecycle warm-up under a step": (
        [
            {
                "type": "OneCycleLR",
                "eta_max": 0.1,
                "total_steps": 10,
                "end": 10,
                "pct_start": 0.1,
                "by_epoch": False,
            }
        ],
        STEPS,
        "schedule[0].pct_start",
        "longer than 1 step",
    ),
}


@pytest.mark.parametrize("case", BUILD_CASES.values(), ids=BUILD_CASES.keys())
def test_entry_that_fails_once_steps_are_known_is_a_recipe_error(case):
    entries, train, key, fragment = case
    with pytest.raises(RecipeError) as info:
        build_schedule(entries, param_groups=SGD, steps_per_epoch=10, train_cfg=train)
    assert info.value.key == key
    assert fragment in info.value.message


class HalvingLR(ParamScheduler):
    """Halve the lr at the window's first step (a custom scheduler for the test)."""

    param = "lr"
    args = {"divisor": Arg("number", 2.0)}

    def maps(self, t: np.ndarray) -> StepMaps:
        a = np.ones(t.size)
        a[0] = 1 / self.divisor
        return StepMaps(a)


def test_custom_scheduler_registers_and_chains_with_builtin_ones():
    register_scheduler(HalvingLR, force=True)
    entries = [
        {"type": "HalvingLR", "by_epoch": False, "begin": 5},
        {"type": "ExponentialLR", "gamma": 0.5, "by_epoch": False, "end": 3},
    ]
    schedule = build_schedule(entries, param_groups=SGD, steps_per_epoch=10, train_cfg=EPOCHS)
    assert [schedule.values(s)[0]["lr"] for s in (0, 2, 4, 5, 99)] == pytest.approx(
        [0.1, 0.025, 0.025, 0.0125, 0.0125]
    )
    with pytest.raises(RecipeError) as info:
        validate_schedule([{"type": "HalvingLR", "divisr": 3}], EPOCHS)
    assert info.value.key == "schedule[0].divisr" and "did you mean 'divisor'" in info.value.message


def test_scheduler_by_import_path_and_non_scheduler_path():
    module = sys.modules[__name__].__name__
    validate_schedule([{"type": f"{module}:HalvingLR"}], EPOCHS)
    with pytest.raises(RecipeError) as info:
        validate_schedule([{"type": "torch.optim:SGD"}], EPOCHS)
    assert info.value.key == "schedule[0].type" and "ParamScheduler subclass" in info.value.message


def test_recipe_loader_reports_a_bad_schedule_as_one_line_with_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        textwrap.dedent("""
        [model]
        name = "test_vit"
        [data]
        path = "data/digits"
        batch_size = 8
        [train]
        epochs = 10
        [optimizer]
        type = "SGD"
        lr = 0.1
        [[schedule]]
        type = "LinearLR"
        end = 1
        [[schedule]]
        type = "MultiStepLR"
        milestones = [8, 12]
    """)
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    text = str(info.value)
    assert text.startswith(f"recipe error: {path}: schedule[1].milestones: milestone 12")
    assert "\n" not in text


def test_momentum_group_check_accepts_sgd_without_momentum_like_mmengine():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = build_schedule(
        [{"type": "LinearMomentum", "end": 2}],
        param_groups=opt.param_groups,
        steps_per_epoch=5,
        train_cfg=EPOCHS,
    )
    assert schedule.values(0)[0]["momentum"] == 0.0
