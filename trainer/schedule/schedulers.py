"""MMEngine's parameter schedulers as per-step affine rules, with MMEngine's names, arguments and defaults.

MMEngine's schedulers are chainable: each step reads the group's current value `x` and writes
`a * x + u + v * base`, where `base` is the group's initial value (MMEngine's `initial_<param>`).
Each class here returns those coefficients for all its local steps at once (numpy), with exactly the
floating-point expressions of `mmengine/optim/scheduler/param_scheduler.py` (0.10.7), so that the
composed curve matches MMEngine's value for value. `trainer.schedule.compose` chains them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from trainer.errors import RecipeError
from trainer.registry import Registry

REQUIRED: Any = object()


@dataclass(frozen=True)
class Arg:
    """One scheduler argument: its kind, default and whether `convert_to_iter_based` scales it.

    Kinds: "int", "number", "bool", "str" (with `choices`), "ints", "numbers" (lists). An argument with
    `per_epoch` counts epochs when `by_epoch` is true; MMEngine multiplies it by the epoch length on
    conversion, so it may then be fractional.
    """

    kind: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    per_epoch: bool = False


class StepMaps(NamedTuple):
    """Per local step t the new value is `a[t] * x + u[t] + v[t] * base` (u, v None where zero)."""

    a: np.ndarray
    u: np.ndarray | None = None
    v: np.ndarray | None = None


COMMON_ARGS: dict[str, Arg] = {
    "begin": Arg("int", 0, per_epoch=True),
    "end": Arg("int", None, per_epoch=True),
    "by_epoch": Arg("bool", True),
    "convert_to_iter_based": Arg("bool", False),
}


class ParamScheduler:
    """Base of every scheduler: one optimizer hyper-parameter, a window [begin, end) and a chainable rule.

    `param` is "lr" or "momentum" for the LR/Momentum classes and None for the generic
    `*ParamScheduler` forms, which take `param_name`. After construction `begin`, `end` and `by_epoch`
    are in the units the scheduler steps in (steps, or epochs for an unconverted by_epoch entry).
    """

    param: ClassVar[str | None] = None
    args: ClassVar[dict[str, Arg]] = {}
    needs_metric: ClassVar[bool] = False

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.param_name: str = self.param or values["param_name"]

    @classmethod
    def all_args(cls) -> dict[str, Arg]:
        """Every argument an entry of this type may set (common window arguments first)."""
        own = {"param_name": Arg("str")} if cls.param is None else {}
        return {**COMMON_ARGS, **own, **cls.args}

    @property
    def span(self) -> int | float:
        """end - begin: MMEngine's window length (its `total_iters` is span - 1)."""
        return self.end - self.begin

    def check(self, key: str) -> None:
        """Cross-argument checks that need no step units; raise RecipeError(`key.<arg>`, ...)."""

    def check_window(self, key: str, steps: int) -> None:
        """Checks once the window is in step units and `steps` local steps will run."""

    def base_override(self) -> float | None:
        """The value later schedulers see as the group's initial value, where this one overwrites it."""
        return None

    def maps(self, t: np.ndarray) -> StepMaps:
        """The affine maps of local steps `t` (0, 1, ... counted from `begin`)."""
        raise NotImplementedError


SCHEDULERS: Registry[type[ParamScheduler]] = Registry("scheduler")
register_scheduler = SCHEDULERS.register


def exact_cos(x: np.ndarray) -> np.ndarray:
    """`math.cos` elementwise, bit-identical to MMEngine (numpy's SIMD cos may differ in the last ulp,
    which a chained cosine amplifies near its minimum)."""
    return np.fromiter(map(math.cos, x.tolist()), dtype=np.float64, count=x.size)


def _positive(key: str, value: float, what: str = "must be > 0") -> None:
    if not value > 0:
        raise RecipeError(key, f"{what}, got {value!r}")


def _cosine_ratio(step: np.ndarray, period: np.ndarray | float, smooth: np.ndarray) -> np.ndarray:
    """MMEngine's chained cosine factor (1 + cos(pi s / T)) / (1 + cos(pi (s - 1) / T)) where `smooth`
    (1 elsewhere). `step` counts up by one within a period, so the denominator is the previous
    element's numerator: one cosine per step, bit-identical to MMEngine's two."""
    numerator = 1 + exact_cos(math.pi * step / period)
    ratio = np.ones(step.size)
    at = np.flatnonzero(smooth)
    ratio[at] = numerator[at] / numerator[at - 1]
    return ratio


def _eta_min_terms(
    sched: ParamScheduler, ratio: np.ndarray, u: np.ndarray, v: np.ndarray, mask: np.ndarray
) -> None:
    """Fill u/v where `mask` for `x -> ratio * (x - m) + m` with m = eta_min or base * eta_min_ratio."""
    if sched.eta_min_ratio is None:
        u[mask] = (sched.eta_min or 0.0) * (1 - ratio[mask])
    else:
        v[mask] = sched.eta_min_ratio * (1 - ratio[mask])


def _check_eta_min(sched: ParamScheduler, key: str, required: bool) -> None:
    if sched.eta_min is not None and sched.eta_min_ratio is not None:
        raise RecipeError(
            f"{key}.eta_min_ratio",
            "give eta_min (absolute) or eta_min_ratio (relative to each group's initial value), not both",
        )
    if required and sched.eta_min is None and sched.eta_min_ratio is None:
        raise RecipeError(
            f"{key}.eta_min",
            "give eta_min (absolute) or eta_min_ratio (relative to each group's initial value)",
        )
    for name in ("eta_min", "eta_min_ratio"):
        value = getattr(sched, name)
        if value is not None and value < 0:
            raise RecipeError(f"{key}.{name}", f"must be >= 0, got {value!r}")


class StepParamScheduler(ParamScheduler):
    """Multiply by `gamma` every `step_size` steps (epochs) of the window."""

    args = {"step_size": Arg("int", per_epoch=True), "gamma": Arg("number", 0.1)}

    def check(self, key: str) -> None:
        _positive(f"{key}.step_size", self.step_size)
        _positive(f"{key}.gamma", self.gamma)

    def maps(self, t: np.ndarray) -> StepMaps:
        a = np.ones(t.size)
        a[(t > 0) & (t % self.step_size == 0)] = self.gamma
        return StepMaps(a)


class MultiStepParamScheduler(ParamScheduler):
    """Multiply by `gamma` at each milestone (counted from `begin`)."""

    args = {"milestones": Arg("ints", per_epoch=True), "gamma": Arg("number", 0.1)}

    def check(self, key: str) -> None:
        ms = self.milestones
        if not ms:
            raise RecipeError(f"{key}.milestones", "must list at least one milestone")
        if any(m < 0 for m in ms):
            raise RecipeError(f"{key}.milestones", f"must be >= 0 (counted from begin), got {ms}")
        if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
            raise RecipeError(f"{key}.milestones", f"must be strictly increasing (no repeats), got {ms}")
        _positive(f"{key}.gamma", self.gamma)

    def check_window(self, key: str, steps: int) -> None:
        for m in self.milestones:
            if m != int(m):
                raise RecipeError(
                    f"{key}.milestones",
                    f"a milestone converts to {m:g} steps, not a whole step; pick epochs that land on a step",
                )

    def maps(self, t: np.ndarray) -> StepMaps:
        a = np.ones(t.size)
        for m in self.milestones:
            if m < t.size:
                a[int(m)] = self.gamma
        return StepMaps(a)


class ConstantParamScheduler(ParamScheduler):
    """Multiply by `factor` for the window's first end-begin-1 steps, then restore (MMEngine's off-by-one)."""

    args = {"factor": Arg("number", 1.0 / 3)}

    def check(self, key: str) -> None:
        if not 0 < self.factor <= 1:
            raise RecipeError(f"{key}.factor", f"must be in (0, 1], got {self.factor!r}")

    def maps(self, t: np.ndarray) -> StepMaps:
        a = np.ones(t.size)
        a[0] = self.factor
        total_iters = self.span - 1
        if 0 < total_iters < t.size:
            a[int(total_iters)] = 1.0 / self.factor
        return StepMaps(a)


class ExponentialParamScheduler(ParamScheduler):
    """Multiply by `gamma` every step (epoch) of the window after the first."""

    args = {"gamma": Arg("number")}

    def check(self, key: str) -> None:
        _positive(f"{key}.gamma", self.gamma)

    def maps(self, t: np.ndarray) -> StepMaps:
        a = np.full(t.size, float(self.gamma))
        a[0] = 1.0
        return StepMaps(a)


class CosineAnnealingParamScheduler(ParamScheduler):
    """Cosine from the current value towards eta_min (absolute) or eta_min_ratio × initial, over T_max."""

    args = {
        "T_max": Arg("int", None, per_epoch=True),
        "eta_min": Arg("number", None),
        "eta_min_ratio": Arg("number", None),
    }

    def check(self, key: str) -> None:
        _check_eta_min(self, key, required=False)
        if self.T_max is not None:
            _positive(f"{key}.T_max", self.T_max)

    def maps(self, t: np.ndarray) -> StepMaps:
        period = self.T_max or self.span
        a, u, v = np.ones(t.size), np.zeros(t.size), np.zeros(t.size)
        later = t[1:]
        restart = np.zeros(t.size, dtype=bool)
        if math.isfinite(period):  # an endless window (max_steps training, end = INF) never restarts
            restart[1:] = (later - 1 - period) % (2 * period) == 0
        smooth = np.zeros(t.size, dtype=bool)
        smooth[1:] = ~restart[1:]
        ratio = _cosine_ratio(t, period, smooth)
        a[smooth] = ratio[smooth]
        _eta_min_terms(self, ratio, u, v, smooth)
        if restart.any():  # x + (base - m) * (1 - cos(pi / T)) / 2
            k = (1 - math.cos(math.pi / period)) / 2
            if self.eta_min_ratio is None:
                v[restart], u[restart] = k, -(self.eta_min or 0.0) * k
            else:
                v[restart] = (1 - self.eta_min_ratio) * k
        return StepMaps(a, u, v)


class LinearParamScheduler(ParamScheduler):
    """Factor from start_factor to end_factor, reached at the window's last step (end - 1)."""

    args = {"start_factor": Arg("number", 1.0 / 3), "end_factor": Arg("number", 1.0)}

    def check(self, key: str) -> None:
        if not 0 < self.start_factor <= 1:
            raise RecipeError(
                f"{key}.start_factor",
                f"must be in (0, 1] (MMEngine divides by it at the second step), got {self.start_factor!r}",
            )
        if not 0 <= self.end_factor <= 1:
            raise RecipeError(f"{key}.end_factor", f"must be in [0, 1], got {self.end_factor!r}")

    def maps(self, t: np.ndarray) -> StepMaps:
        sf, ef = self.start_factor, self.end_factor
        total_iters = self.span - 1
        a = np.empty(t.size)
        a[0] = sf
        a[1:] = 1.0 + (ef - sf) / (total_iters * sf + (t[1:] - 1) * (ef - sf))
        return StepMaps(a)


class PolyParamScheduler(ParamScheduler):
    """Polynomial decay towards eta_min, reached at the window's last step (end - 1)."""

    args = {"eta_min": Arg("number", 0.0), "power": Arg("number", 1.0)}

    def check(self, key: str) -> None:
        if self.eta_min < 0:
            raise RecipeError(f"{key}.eta_min", f"must be >= 0, got {self.eta_min!r}")
        _positive(f"{key}.power", self.power)

    def maps(self, t: np.ndarray) -> StepMaps:
        total_iters = self.span - 1
        a, u = np.ones(t.size), np.zeros(t.size)
        ratio = (1 - 1 / (total_iters - t[1:] + 1)) ** self.power
        a[1:] = ratio
        u[1:] = self.eta_min * (1 - ratio)
        return StepMaps(a, u)


class OneCycleParamScheduler(ParamScheduler):
    """1cycle: eta_max/div_factor up to eta_max, then down to that /final_div_factor (absolute values).

    Like MMEngine it ignores the optimizer's lr and overwrites every group's initial value.
    """

    args = {
        "eta_max": Arg("number"),
        "total_steps": Arg("int", None, per_epoch=True),
        "pct_start": Arg("number", 0.3),
        "anneal_strategy": Arg("str", "cos", choices=("cos", "linear")),
        "div_factor": Arg("number", 25.0),
        "final_div_factor": Arg("number", 1e4),
        "three_phase": Arg("bool", False),
    }

    def check(self, key: str) -> None:
        if self.param_name != "lr":
            raise RecipeError(f"{key}.param_name", f"OneCycle schedules only 'lr', got {self.param_name!r}")
        for name in ("eta_max", "div_factor", "final_div_factor"):
            _positive(f"{key}.{name}", getattr(self, name))
        if self.total_steps is not None:
            _positive(f"{key}.total_steps", self.total_steps)
            if not isinstance(self.total_steps, int):
                raise RecipeError(f"{key}.total_steps", f"must be an integer, got {self.total_steps!r}")
        if not 0 < self.pct_start < 1:
            raise RecipeError(
                f"{key}.pct_start", f"must be between 0 and 1 (exclusive), got {self.pct_start!r}"
            )
        if self.three_phase and self.pct_start > 0.5:
            raise RecipeError(
                f"{key}.pct_start",
                f"must be <= 0.5 with three_phase (the first two phases are "
                f"symmetric), got {self.pct_start!r}",
            )

    @property
    def cycle(self) -> int | float:
        return self.total_steps if self.total_steps is not None else self.span

    def check_window(self, key: str, steps: int) -> None:
        if not float(self.pct_start * self.cycle) > 1:
            raise RecipeError(
                f"{key}.pct_start",
                f"the warm-up phase pct_start x total_steps = "
                f"{self.pct_start * self.cycle:g} steps must be longer than 1 step",
            )
        if steps > self.cycle + 1:
            raise RecipeError(
                f"{key}.total_steps",
                f"the cycle has {self.cycle} steps but the window runs "
                f"{steps} (MMEngine fails past the cycle); drop total_steps or set end",
            )

    def base_override(self) -> float:
        return self.eta_max / self.div_factor

    def _phases(self) -> list[tuple[float, float, float]]:
        """(end_step, start value, end value) per phase, as MMEngine's `_schedule_phases`."""
        initial = self.eta_max / self.div_factor
        low = initial / self.final_div_factor
        total, pct = self.cycle, self.pct_start
        if self.three_phase:
            return [
                (float(pct * total) - 1, initial, self.eta_max),
                (float(2 * pct * total) - 2, self.eta_max, initial),
                (total - 1, initial, low),
            ]
        return [(float(pct * total) - 1, initial, self.eta_max), (total - 1, self.eta_max, low)]

    def maps(self, t: np.ndarray) -> StepMaps:
        values = np.empty(t.size)
        start_step, todo = 0.0, np.ones(t.size, dtype=bool)
        phases = self._phases()
        for i, (end_step, start, end) in enumerate(phases):
            here = todo & ((t <= end_step) | (i == len(phases) - 1))
            pct = (t[here] - start_step) / (end_step - start_step)
            if self.anneal_strategy == "cos":
                values[here] = end + (start - end) / 2.0 * (exact_cos(math.pi * pct) + 1)
            else:
                values[here] = (end - start) * pct + start
            todo &= ~here
            start_step = end_step
        return StepMaps(np.zeros(t.size), values)


class CosineRestartParamScheduler(ParamScheduler):
    """Cosine annealing with restarts: each period restarts at restart_weight × initial value."""

    args = {
        "periods": Arg("ints", per_epoch=True),
        "restart_weights": Arg("numbers", [1.0]),
        "eta_min": Arg("number", None),
        "eta_min_ratio": Arg("number", None),
    }

    def check(self, key: str) -> None:
        if not self.periods or any(not p > 0 for p in self.periods):
            raise RecipeError(f"{key}.periods", f"must list periods > 0, got {self.periods}")
        if len(self.restart_weights) != len(self.periods):
            raise RecipeError(
                f"{key}.restart_weights",
                f"needs one weight per period ({len(self.periods)}), got {len(self.restart_weights)}",
            )
        if any(w < 0 for w in self.restart_weights):
            raise RecipeError(f"{key}.restart_weights", f"must be >= 0, got {self.restart_weights}")
        _check_eta_min(self, key, required=True)

    def maps(self, t: np.ndarray) -> StepMaps:
        cumulative = np.array([sum(self.periods[0 : i + 1]) for i in range(len(self.periods))])
        a, u, v = np.ones(t.size), np.zeros(t.size), np.zeros(t.size)
        n = int(np.count_nonzero(t < cumulative[-1]))  # after the last period: held
        idx = np.searchsorted(cumulative, t[:n], side="right")
        step = t[:n] - np.r_[0, cumulative[:-1]][idx]
        restart = step == 0  # a period starts at restart_weight x the group's initial value
        ratio = _cosine_ratio(step, np.asarray(self.periods)[idx], ~restart)
        ratio[restart] = 0.0
        a[:n] = ratio
        v[:n][restart] = np.asarray(self.restart_weights, dtype=float)[idx[restart]]
        _eta_min_terms(self, a, u, v, np.r_[~restart, np.zeros(t.size - n, dtype=bool)])
        return StepMaps(a, u, v)


class ReduceOnPlateauParamScheduler(ParamScheduler):
    """Multiply by `factor` when the reported `monitor` metric stops improving (epoch-based only)."""

    needs_metric = True
    args = {
        "monitor": Arg("str", "loss"),
        "rule": Arg("str", "less", choices=("less", "greater")),
        "factor": Arg("number", 0.1),
        "patience": Arg("int", 10),
        "threshold": Arg("number", 1e-4),
        "threshold_rule": Arg("str", "rel", choices=("rel", "abs")),
        "cooldown": Arg("int", 0),
        "min_value": Arg("number", 0.0),
        "eps": Arg("number", 1e-8),
    }

    def check(self, key: str) -> None:
        if not self.by_epoch:
            raise RecipeError(
                f"{key}.by_epoch",
                "ReduceOnPlateau steps on validation results: by_epoch must be true (MMEngine)",
            )
        if self.convert_to_iter_based:
            raise RecipeError(
                f"{key}.convert_to_iter_based",
                "ReduceOnPlateau cannot be converted to iterations; it acts when the loop reports a metric",
            )
        if not 0 < self.factor < 1:
            raise RecipeError(f"{key}.factor", f"must be in (0, 1), got {self.factor!r}")
        for name in ("patience", "cooldown", "threshold", "min_value", "eps"):
            if getattr(self, name) < 0:
                raise RecipeError(f"{key}.{name}", f"must be >= 0, got {getattr(self, name)!r}")

    def maps(self, t: np.ndarray) -> StepMaps:
        return StepMaps(np.ones(t.size))

    def is_better(self, value: float, best: float) -> bool:
        """MMEngine's `_is_better` (rule x threshold_rule)."""
        if self.rule == "less":
            return value < (
                best * (1.0 - self.threshold) if self.threshold_rule == "rel" else best - self.threshold
            )
        return value > (
            best * (self.threshold + 1.0) if self.threshold_rule == "rel" else best + self.threshold
        )


def _variant(generic: type[ParamScheduler], name: str, param: str) -> type[ParamScheduler]:
    doc = f"{generic.__doc__.splitlines()[0]} (MMEngine's {name}: acts on `{param}`"
    doc += ", or betas[0] for Adam-like optimizers)." if param == "momentum" else ")."
    return type(name, (generic,), {"param": param, "__doc__": doc, "__module__": __name__})


_FAMILIES = {
    "Step": StepParamScheduler,
    "MultiStep": MultiStepParamScheduler,
    "Constant": ConstantParamScheduler,
    "Exponential": ExponentialParamScheduler,
    "CosineAnnealing": CosineAnnealingParamScheduler,
    "Linear": LinearParamScheduler,
    "Poly": PolyParamScheduler,
    "OneCycle": OneCycleParamScheduler,
    "CosineRestart": CosineRestartParamScheduler,
    "ReduceOnPlateau": ReduceOnPlateauParamScheduler,
}

for _stem, _generic in _FAMILIES.items():
    register_scheduler(_generic)
    register_scheduler(_variant(_generic, f"{_stem}LR", "lr"))
    if _stem != "OneCycle":  # MMEngine has no OneCycleMomentum
        register_scheduler(_variant(_generic, f"{_stem}Momentum", "momentum"))
