"""`build_schedule`: recipe entries + the optimizer's param groups -> the `Schedule` the loop applies."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainer.schedule.compose import ParamCurve, compose
from trainer.schedule.plateau import Plateau
from trainer.schedule.units import Window, resolve, total_steps
from trainer.schedule.validate import parse_schedule, training_length, warn


class Schedule:
    """Every scheduled hyper-parameter's value for every param group at every step.

    The curves are computed once at build time; `values(step)` and `apply(optimizer, step)` only index
    them. Only ReduceOnPlateau makes values depend on more than the step: it acts on `report_metric`,
    and `state_dict()` keeps the reports so a resumed run replays them.
    """

    def __init__(
        self,
        curves: dict[str, ParamCurve],
        plateaus: list[tuple[Plateau, str]],
        steps_per_epoch: int,
        total_steps: int,
        group_names: list[str],
    ) -> None:
        self.curves = curves
        self.plateaus = plateaus
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        self.group_names = group_names
        self._reports: list[tuple[str, float, int]] = []

    @property
    def params(self) -> list[str]:
        """The scheduled hyper-parameters, "lr" first."""
        return list(self.curves)

    @property
    def monitored_metrics(self) -> set[str]:
        """Metric names ReduceOnPlateau entries wait for (the loop must report them)."""
        return {p.scheduler.monitor for p, _ in self.plateaus}

    def _index(self, step: int) -> int:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return min(step, self.total_steps - 1)

    def values(self, step: int) -> list[dict[str, float]]:
        """Per param group, each scheduled hyper-parameter's value in force during `step` (0-based)."""
        t = self._index(step)
        columns = {name: curve.values(t) for name, curve in self.curves.items()}
        return [{name: column[g] for name, column in columns.items()} for g in range(len(self.group_names))]

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Write the values of `step` into `optimizer.param_groups` (momentum into betas[0] for Adam-like)."""
        groups = optimizer.param_groups
        if len(groups) != len(self.group_names):
            raise ValueError(
                f"the schedule was built for {len(self.group_names)} param groups, "
                f"the optimizer has {len(groups)}"
            )
        t = self._index(step)
        for name, curve in self.curves.items():
            for group, value, in_betas in zip(groups, curve.values(t), curve.betas, strict=True):
                if in_betas:
                    group["betas"] = (value, group["betas"][1], *group["betas"][2:])
                else:
                    group[name] = value

    def curve(self, name: str = "lr", groups: list[int] | None = None) -> np.ndarray:
        """The whole curve of `name`, shape (groups, total_steps); value in force during each step."""
        chosen = list(range(len(self.group_names))) if groups is None else groups
        return self.curves[name].curve(chosen)

    def distinct_groups(self, name: str | None = None) -> list[list[int]]:
        """Groups partitioned by identical curves of `name` (default: of every scheduled hyper-parameter)."""
        curves = list(self.curves.values()) if name is None else [self.curves[name]]
        seen: dict[tuple, list[int]] = {}
        for g in range(len(self.group_names)):
            key = tuple((c.initial[g], tuple(d[g] for _, _, d in c.events)) for c in curves)
            seen.setdefault(key, []).append(g)
        return list(seen.values())

    def report_metric(self, name: str, value: float, step: int) -> None:
        """A validation result after `step` optimizer steps; ReduceOnPlateau may cut values from `step` on."""
        if name not in self.monitored_metrics:
            return
        self._reports.append((name, float(value), int(step)))
        self._observe(name, float(value), int(step))

    def _observe(self, name: str, value: float, step: int) -> None:
        epoch = step // self.steps_per_epoch
        for plateau, param in self.plateaus:
            if plateau.scheduler.monitor != name or not plateau.observe(value, epoch):
                continue
            curve = self.curves[param]
            curve.add_event(step, plateau.reduce(curve.values(self._index(step))))

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs: the metric reports ReduceOnPlateau has seen (the rest is the recipe)."""
        return {"metric_reports": [list(r) for r in self._reports]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay the reports of `state_dict()` on this (freshly built) schedule."""
        self._reports = []
        for curve in self.curves.values():
            curve.events.clear()
        for plateau, _ in self.plateaus:
            plateau.reset()
        for name, value, step in state.get("metric_reports", []):
            self.report_metric(name, value, step)


def build_schedule(
    entries: list[dict[str, Any]],
    *,
    param_groups: list[dict[str, Any]],
    steps_per_epoch: int,
    train_cfg: dict[str, Any],
    say_notes: bool = True,
) -> Schedule:
    """Check `entries` and precompute the schedule of every param group (each from its own initial values,
    as MMEngine's `initial_lr`), for training of `train_cfg` length at `steps_per_epoch`."""
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
    if not param_groups:
        raise ValueError("the optimizer has no param groups")
    parsed = parse_schedule(entries, train_cfg)
    epochs, max_steps = training_length(train_cfg)
    total = total_steps(epochs, max_steps, steps_per_epoch)
    notes: list[str] = []  # what only step units show (the rest was said when the recipe was checked)
    resolved = [resolve(e, steps_per_epoch, epochs, total, notes) for e in parsed if not e.dropped]
    windows = [w for w in resolved if w is not None]
    if say_notes:
        warn(notes)
    by_param: dict[str, list[Window]] = {"lr": []}
    for w in windows:
        by_param.setdefault(w.scheduler.param_name, []).append(w)
    plateaus = [(Plateau(w.scheduler), w.scheduler.param_name) for w in windows if w.entry.cls.needs_metric]
    watched = {param for _, param in plateaus}
    curves = {
        name: compose(name, ws, total, param_groups, keep_gain=name in watched)
        for name, ws in by_param.items()
    }
    names = [str(g.get("name", i)) for i, g in enumerate(param_groups)]
    return Schedule(curves, plateaus, steps_per_epoch, total, names)
