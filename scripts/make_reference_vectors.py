"""Write tests/data/mmengine_vectors.json: schedule values recorded from MMEngine's own Runner.

Run from the repository root with the dev dependencies installed (mmengine==0.10.7):
`python scripts/make_reference_vectors.py [--out tests/data/mmengine_vectors.json]`. Nothing is downloaded;
the output is deterministic for a given MMEngine and torch version (both are written into `meta`).

Every schedule vector is a real `mmengine.runner.Runner` training a parameter-only model (its train_step
calls `optimizer.step()`) in an EpochBasedTrainLoop (`max_epochs`) or IterBasedTrainLoop (`max_iters`), with
the stock ParamSchedulerHook and no other default hook. A VERY_HIGH priority hook records the param groups in
`before_train_iter`, so `values_at_iteration[i]` is the value that the optimizer step of dataloader iteration
i uses. tests/test_schedule_vectors.py compares our schedules with these values, and
tests/test_schedule_mmengine.py checks that its own MMEngine oracle (MMEngine's schedulers stepped as the
hook steps them, without a Runner) reproduces them.

`direct_stepping` holds what needs no Runner: ReduceOnPlateauLR stepped as after_train_epoch and
after_val_epoch step it, with a chosen validation loss per epoch.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "mmengine_vectors.json"
SGD = {"type": "SGD", "lr": 0.1, "momentum": 0.9}
TWO_GROUPS = {"custom_keys": {"b.": {"lr_mult": 0.1}}}  # a.weight at lr, b.weight at lr / 10


def vector(
    description: str,
    schedulers: list[dict[str, Any]],
    query: list[int],
    *,
    epoch_length: int,
    max_epochs: int | None = None,
    max_iters: int | None = None,
    optimizer: dict[str, Any] = SGD,
    paramwise_cfg: dict[str, Any] | None = None,
    keys: tuple[tuple[int, str], ...] = ((0, "lr"),),
    accumulative_counts: int = 1,
    full: bool = False,
) -> dict[str, Any]:
    return {
        "description": description,
        "optimizer": optimizer,
        "param_scheduler": schedulers,
        "epoch_length": epoch_length,
        "max_epochs": max_epochs,
        "max_iters": max_iters if max_iters is not None else max_epochs * epoch_length,
        "paramwise_cfg": paramwise_cfg,
        "accumulative_counts": accumulative_counts,
        "keys": keys,
        "query": query,
        "full": full,
    }


def linear_then(extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=50), extra]


OVERLAP = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=0, end=1000, T_max=1000),
]
OVERLAP_ETA_MIN = [OVERLAP[0], {**OVERLAP[1], "eta_min": 0.05}]
OVERLAP_QUERY = [0, 1, 50, 99, 100, 101, 500, 999]

VECTORS = {
    "V1_warmup50iters_multistep_epoch_8_11": vector(
        "LinearLR warm-up over iterations [0, 50) + MultiStepLR by epoch, milestones [8, 11]; 100 iterations "
        "per epoch, 12 epochs.",
        linear_then(dict(type="MultiStepLR", by_epoch=True, milestones=[8, 11], gamma=0.1)),
        [0, 1, 2, 25, 48, 49, 50, 51, 99, 100, 101, 799, 800, 801, 1099, 1100, 1199],
        epoch_length=100,
        max_epochs=12,
    ),
    "V1b_warmup50iters_multistep_8_11_convert_to_iter_based": vector(
        "V1 with the MultiStepLR converted to iterations (milestones 800 and 1100): the same curve.",
        linear_then(
            dict(type="MultiStepLR", by_epoch=True, milestones=[8, 11], gamma=0.1, convert_to_iter_based=True)
        ),
        [0, 49, 50, 799, 800, 1099, 1100, 1199],
        epoch_length=100,
        max_epochs=12,
    ),
    "V2_linear_epoch10_converted_then_cosine_by_epoch": vector(
        "LinearLR over epochs [0, 10) converted to iterations + CosineAnnealingLR by epoch from epoch 10 "
        "(end defaults to max_epochs = 20, stepped once per epoch); 100 iterations per epoch.",
        [
            dict(type="LinearLR", start_factor=0.001, by_epoch=True, end=10, convert_to_iter_based=True),
            dict(type="CosineAnnealingLR", by_epoch=True, begin=10),
        ],
        [0, 1, 99, 100, 500, 998, 999, 1000, 1099, 1100, 1199, 1200, 1500, 1900, 1999],
        epoch_length=100,
        max_epochs=20,
    ),
    "V3_linear_epoch10_converted_then_cosine_converted": vector(
        "V2 with the cosine converted to iterations too: [1000, 2000), T_max 1000 iterations.",
        [
            dict(type="LinearLR", start_factor=0.001, by_epoch=True, end=10, convert_to_iter_based=True),
            dict(type="CosineAnnealingLR", by_epoch=True, begin=10, convert_to_iter_based=True),
        ],
        [0, 999, 1000, 1001, 1500, 1999],
        epoch_length=100,
        max_epochs=20,
    ),
    "V4_gap_between_schedulers": vector(
        "LinearLR over iterations [0, 100), nothing over [100, 200), CosineAnnealingLR over [200, 400): the "
        "value holds in the gap and after the last end.",
        [
            dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=100),
            dict(type="CosineAnnealingLR", by_epoch=False, begin=200, end=400, T_max=200, eta_min=0.001),
        ],
        [0, 50, 99, 100, 150, 199, 200, 201, 300, 399, 400, 599],
        epoch_length=100,
        max_epochs=6,
    ),
    "V5_chained_cosine_starts_from_current_lr": vector(
        "MultiStepLR over [0, 100) with a milestone at 50, a gap, then CosineAnnealingLR over [200, 400): "
        "the cosine anneals from the current lr (0.01), not the base lr (the chainable form).",
        [
            dict(type="MultiStepLR", by_epoch=False, begin=0, end=100, milestones=[50], gamma=0.1),
            dict(type="CosineAnnealingLR", by_epoch=False, begin=200, end=400, eta_min=0.001),
        ],
        [0, 49, 50, 99, 100, 199, 200, 201, 300, 399, 499],
        epoch_length=100,
        max_epochs=5,
    ),
    "V6a_overlap_linear_then_cosine": vector(
        "Overlapping windows: LinearLR [0, 100) listed before CosineAnnealingLR [0, 1000).",
        OVERLAP,
        OVERLAP_QUERY,
        epoch_length=100,
        max_epochs=10,
    ),
    "V6b_overlap_cosine_then_linear": vector(
        "V6a in the opposite list order.", OVERLAP[::-1], OVERLAP_QUERY, epoch_length=100, max_epochs=10
    ),
    "V6c_overlap_linear_then_cosine_eta_min": vector(
        "V6a with eta_min 0.05: the chainable cosine is then affine, so the list order matters.",
        OVERLAP_ETA_MIN,
        OVERLAP_QUERY,
        epoch_length=100,
        max_epochs=10,
    ),
    "V6d_overlap_cosine_then_linear_eta_min": vector(
        "V6c in the opposite list order.",
        OVERLAP_ETA_MIN[::-1],
        OVERLAP_QUERY,
        epoch_length=100,
        max_epochs=10,
    ),
    "V7_tutorial_linear100_cosine800_iterloop": vector(
        "MMEngine's tutorial schedule: LinearLR over [0, 100) + CosineAnnealingLR T_max 800 over [100, 900) "
        "in an IterBasedTrainLoop of 1000 iterations.",
        [
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=100),
            dict(type="CosineAnnealingLR", T_max=800, by_epoch=False, begin=100, end=900),
        ],
        [0, 1, 99, 100, 101, 500, 899, 900, 999],
        epoch_length=1000,
        max_iters=1000,
    ),
    "V8_onecycle": vector(
        "OneCycleLR eta_max 0.1 over 100 iterations; it overwrites the optimizer's lr (123).",
        [dict(type="OneCycleLR", eta_max=0.1, total_steps=100, pct_start=0.3, by_epoch=False)],
        [0, 1, 28, 29, 30, 50, 98, 99],
        epoch_length=100,
        max_iters=100,
        optimizer={"type": "SGD", "lr": 123.0, "momentum": 0.9},
        full=True,
    ),
    **{
        f"V9_poly_power{power}": vector(
            f"PolyLR power {power} over [0, 100), then held; eta_min is reached at iteration 99.",
            [dict(type="PolyLR", eta_min=0.001, power=power, by_epoch=False, begin=0, end=100)],
            [0, 1, 50, 98, 99, 100, 150],
            epoch_length=200,
            max_iters=200,
        )
        for power in (1.0, 2.0)
    },
    "V10_cosine_restart": vector(
        "CosineRestartLR periods [100, 200], restart weights [1, 0.5]; held after iteration 300.",
        [
            dict(
                type="CosineRestartLR",
                periods=[100, 200],
                restart_weights=[1, 0.5],
                eta_min=0.0,
                by_epoch=False,
            )
        ],
        [0, 1, 50, 99, 100, 101, 200, 299, 300, 399],
        epoch_length=400,
        max_iters=400,
    ),
    "V11a_steplr_by_epoch": vector(
        "StepLR by epoch, step_size 3: the lr changes at the first iteration of epochs 3, 6 and 9.",
        [dict(type="StepLR", step_size=3, gamma=0.5, by_epoch=True)],
        [0, 29, 30, 59, 60, 90, 99],
        epoch_length=10,
        max_epochs=10,
    ),
    "V11b_exponential_by_iter": vector(
        "ExponentialLR gamma 0.9 over iterations [0, 5).",
        [dict(type="ExponentialLR", gamma=0.9, by_epoch=False, end=5)],
        list(range(8)),
        epoch_length=10,
        max_iters=10,
    ),
    "V11c_constantlr_off_by_one": vector(
        "ConstantLR factor 0.5 with end 10: the factor applies to iterations 0..8, iteration 9 is restored.",
        [dict(type="ConstantLR", factor=0.5, by_epoch=False, end=10)],
        list(range(13)),
        epoch_length=20,
        max_iters=20,
    ),
    "V11d_multistep_relative_to_begin": vector(
        "MultiStepLR begin 100, milestone 50: the decay happens at iteration 150 (milestones count from "
        "begin).",
        [dict(type="MultiStepLR", by_epoch=False, begin=100, milestones=[50], gamma=0.1)],
        [0, 50, 100, 149, 150, 199],
        epoch_length=200,
        max_iters=200,
    ),
    **{
        f"V12_cosine_{label}_two_groups": vector(
            f"CosineAnnealingLR T_max 100 with {label} on two groups (lr 0.1 and 0.01): eta_min_ratio is per "
            "group, eta_min is one absolute value.",
            [dict(type="CosineAnnealingLR", by_epoch=False, T_max=100, begin=0, end=100, **extra)],
            [0, 50, 99, 100],
            epoch_length=120,
            max_iters=120,
            paramwise_cfg=TWO_GROUPS,
            keys=((0, "lr"), (1, "lr")),
        )
        for label, extra in (("eta_min_ratio", {"eta_min_ratio": 0.1}), ("eta_min", {"eta_min": 0.005}))
    },
    "V13a_sgd_cosine_momentum": vector(
        "CosineAnnealingMomentum eta_min 0.85 over [0, 10) on SGD's momentum.",
        [dict(type="CosineAnnealingMomentum", eta_min=0.85, T_max=10, by_epoch=False, begin=0, end=10)],
        [0, 1, 5, 9, 10, 11],
        epoch_length=12,
        max_iters=12,
        keys=((0, "momentum"),),
    ),
    "V13b_adam_linear_momentum_betas": vector(
        "LinearMomentum start_factor 0.5 over [0, 10) on Adam: the scheduler writes group['momentum'] and "
        "betas = (momentum, beta2).",
        [dict(type="LinearMomentum", start_factor=0.5, by_epoch=False, begin=0, end=10)],
        [0, 1, 5, 9, 10, 11],
        epoch_length=12,
        max_iters=12,
        optimizer={"type": "Adam", "lr": 0.001, "betas": [0.9, 0.999]},
        keys=((0, "betas"), (0, "momentum")),
    ),
    "V14_accumulation_scheduler_steps_per_dataloader_iter": vector(
        "accumulative_counts 4 with LinearLR end 8: the hook steps the scheduler after every dataloader "
        "iteration, whether or not the optimizer stepped (we count updates instead).",
        [dict(type="LinearLR", start_factor=0.5, by_epoch=False, end=8)],
        list(range(10)),
        epoch_length=12,
        max_iters=12,
        accumulative_counts=4,
    ),
    "V15_linear_begin_gt_0": vector(
        "LinearLR over [10, 20) alone: iterations 0..9 use the optimizer's lr unchanged.",
        [dict(type="LinearLR", start_factor=0.5, by_epoch=False, begin=10, end=20)],
        [0, 9, 10, 11, 19, 20],
        epoch_length=30,
        max_iters=30,
    ),
    "V16_cosine_by_epoch_default_end": vector(
        "CosineAnnealingLR by epoch with no begin, end or T_max: end defaults to max_epochs = 5, stepped per "
        "epoch; the last epoch's lr is the cosine at 4/5, never eta_min.",
        [dict(type="CosineAnnealingLR", by_epoch=True)],
        [0, 9, 10, 20, 30, 40, 49],
        epoch_length=10,
        max_epochs=5,
    ),
    "V17_by_epoch_scheduler_in_iter_based_loop": vector(
        "LinearLR by epoch in an IterBasedTrainLoop of 30 iterations: after_train_epoch fires once, at the "
        "end, so the lr stays at base * start_factor for the whole run (we reject this schedule).",
        [dict(type="LinearLR", start_factor=0.1, by_epoch=True, end=5)],
        [0, 5, 10, 20, 29],
        epoch_length=10,
        max_iters=30,
        optimizer={"type": "SGD", "lr": 0.1},
    ),
}

PLATEAU_LOSSES = [1.0, 0.9] + [0.95] * 10


def run_runner(spec: dict[str, Any], work_dir: str, name: str) -> list[list[Any]]:
    """Train `spec` with a real Runner; one row per dataloader iteration, one value per recorded key."""
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class ParamsOnly(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(1, 1, bias=False)
            self.b = nn.Linear(1, 1, bias=False)

        def forward(self, inputs, data_samples=None, mode="tensor"):
            return None

        def train_step(self, data, optim_wrapper):
            optim_wrapper.optimizer.step()
            return {}

    class Recorder(Hook):
        priority = "VERY_HIGH"

        def __init__(self, keys) -> None:
            self.keys, self.rows = keys, []

        def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
            groups = runner.optim_wrapper.optimizer.param_groups
            row = [groups[g][key] for g, key in self.keys]
            self.rows.append([list(v) if isinstance(v, tuple | list) else v for v in row])

    recorder = Recorder(spec["keys"])
    if spec["max_epochs"] is not None:
        train_cfg = dict(by_epoch=True, max_epochs=spec["max_epochs"])
    else:
        train_cfg = dict(by_epoch=False, max_iters=spec["max_iters"])
    optim_wrapper = dict(
        optimizer=copy.deepcopy(spec["optimizer"]), accumulative_counts=spec["accumulative_counts"]
    )
    if spec["paramwise_cfg"] is not None:
        optim_wrapper["paramwise_cfg"] = copy.deepcopy(spec["paramwise_cfg"])
    loader = torch.utils.data.DataLoader(list(range(spec["epoch_length"])), batch_size=1)
    runner = Runner(
        model=ParamsOnly(),
        work_dir=work_dir,
        experiment_name=name,
        train_dataloader=loader,
        train_cfg=train_cfg,
        optim_wrapper=optim_wrapper,
        param_scheduler=copy.deepcopy(spec["param_scheduler"]),
        default_hooks=dict(
            param_scheduler=dict(type="ParamSchedulerHook"),
            runtime_info=None,
            timer=None,
            logger=None,
            checkpoint=None,
            sampler_seed=None,
        ),
        custom_hooks=[recorder],
        visualizer=dict(type="Visualizer", name=name, vis_backends=[]),
        log_level="ERROR",
    )
    runner.train()
    return recorder.rows


def schedule_vectors(work_dir: str) -> dict[str, Any]:
    out = {}
    for name, spec in VECTORS.items():
        rows = run_runner(spec, work_dir, name)
        entry = {k: v for k, v in spec.items() if k not in ("keys", "query", "full")}
        entry["recorded"] = [f"param_groups[{g}][{key!r}]" for g, key in spec["keys"]]
        entry["total_iterations_recorded"] = len(rows)
        entry["values_at_iteration"] = {
            str(i): rows[i][0] if len(rows[i]) == 1 else rows[i] for i in spec["query"] if i < len(rows)
        }
        if spec["full"]:
            entry["all_values"] = [row[0] if len(row) == 1 else row for row in rows]
        out[name] = entry
    return out


def reduce_on_plateau_trace() -> list[dict[str, Any]]:
    """ReduceOnPlateauLR(patience 2, factor 0.5, cooldown 1, min_value 0.02) on SGD lr 0.1, stepped once
    after each training epoch (counting only) and once with that epoch's validation loss."""
    import mmengine.optim  # noqa: F401  (registers the schedulers)
    from mmengine.registry import PARAM_SCHEDULERS

    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    scheduler = PARAM_SCHEDULERS.build(
        dict(type="ReduceOnPlateauLR", monitor="loss", patience=2, factor=0.5, cooldown=1, min_value=0.02),
        default_args=dict(optimizer=optimizer),
    )
    trace = []
    for epoch, loss in enumerate(PLATEAU_LOSSES):
        scheduler.step()  # after_train_epoch
        scheduler.step(dict(loss=loss))  # after_val_epoch
        trace.append(
            dict(
                epoch=epoch,
                loss=loss,
                lr=optimizer.param_groups[0]["lr"],
                num_bad=scheduler.num_bad_epochs,
                cooldown=scheduler.cooldown_counter,
            )
        )
    return trace


def build_vectors() -> dict[str, Any]:
    import mmengine

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as work_dir:
        vectors = schedule_vectors(work_dir)
    return {
        "meta": {
            "mmengine_version": mmengine.__version__,
            "torch_version": torch.__version__.split("+")[0],
            "written_by": "scripts/make_reference_vectors.py",
            "convention": "values_at_iteration[i]: the value in the optimizer's param group during "
            "dataloader iteration i (recorded in before_train_iter; the stock ParamSchedulerHook steps "
            "iteration schedulers after every iteration and epoch schedulers after every epoch)",
        },
        "schedule_vectors": vectors,
        "direct_stepping": {
            "reduce_on_plateau_patience2_factor0.5_cooldown1_min0.02": reduce_on_plateau_trace()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    vectors = build_vectors()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"wrote {args.out}: {len(vectors['schedule_vectors'])} schedule vectors")


if __name__ == "__main__":
    main()
