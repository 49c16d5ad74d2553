"""Chain the entries into one per-step curve per hyper-parameter, precomputed once, O(1) per step after.

Every MMEngine scheduler step is an affine map of the group's value, `x -> a x + u + v base`, with `a`
shared by all groups. Composing the maps of each step (in the order MMEngine's ParamSchedulerHook
applies them) and then prefix-composing over steps (a log-depth scan in numpy) gives, for every step,
`x_t = X[t] * x0 + U[t]` for a group with initial value x0: two arrays serve every group, and the value
at any step is a lookup, so resuming at step t gives the same number as running from 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.errors import RecipeError
from trainer.schedule.units import Window
from trainer.values import is_number


@dataclass
class ParamCurve:
    """The schedule of one hyper-parameter ("lr", "momentum", ...) for every parameter group.

    `scale[t] * initial[g] + offset[t]` is group g's value in force during step t; `step_gain` (kept only
    where ReduceOnPlateau may act) is each step's own multiplier, to carry a reduction forward.
    """

    name: str
    initial: list[float]
    scale: np.ndarray
    offset: np.ndarray
    step_gain: np.ndarray | None = None
    betas: list[bool] = field(default_factory=list)
    events: list[tuple[int, np.ndarray | None, list[float]]] = field(default_factory=list)

    def values(self, step: int) -> list[float]:
        """Every group's value in force during `step`."""
        scale, offset = self.scale.item(step), self.offset.item(step)
        out = [scale * x0 + offset for x0 in self.initial]
        for start, gain, deltas in self.events:
            if start <= step:
                g = 1.0 if gain is None else gain.item(step - start)
                out = [x + d * g for x, d in zip(out, deltas, strict=True)]
        return out

    def curve(self, groups: list[int]) -> np.ndarray:
        """Values of `groups` over every step, shape (len(groups), steps)."""
        out = np.outer(np.asarray([self.initial[g] for g in groups]), self.scale) + self.offset
        for start, gain, deltas in self.events:
            d = np.asarray([deltas[g] for g in groups])[:, None]
            out[:, start:] += d * (1.0 if gain is None else gain)
        return out

    def add_event(self, step: int, deltas: list[float]) -> None:
        """Change every group's value by `deltas` from `step` on, carried through later steps' maps."""
        if step >= len(self.scale) or not any(deltas):
            return
        gains = self.step_gain[step + 1 :]
        gain = None
        if not np.all(gains == 1.0):
            gain = np.empty(len(gains) + 1)
            gain[0] = 1.0
            np.cumprod(gains, out=gain[1:])
        self.events.append((step, gain, deltas))


def initial_values(name: str, param_groups: list[dict[str, Any]], key: str) -> tuple[list[float], list[bool]]:
    """Each group's starting value of `name`, and whether it lives in betas[0] (Adam-like momentum)."""
    values, betas = [], []
    for i, group in enumerate(param_groups):
        if name in group and is_number(group[name]):
            values.append(float(group[name]))
            betas.append(False)
        elif name == "momentum" and "betas" in group:
            values.append(float(group["betas"][0]))
            betas.append(True)
        elif name == "momentum":
            raise RecipeError(
                key,
                f"schedules momentum, but param group {i} has neither `momentum` nor "
                f"`betas` (the optimizer has no momentum to schedule)",
            )
        else:
            found = ", ".join(k for k, v in group.items() if is_number(v))
            raise RecipeError(key, f"param group {i} has no numeric {name!r} to schedule (it has: {found})")
    return values, betas


def compose(
    name: str, windows: list[Window], total: int, param_groups: list[dict[str, Any]], keep_gain: bool
) -> ParamCurve:
    """The curve of `name` under `windows` (list order), as MMEngine's Runner steps them."""
    key = f"{windows[0].entry.key}.type" if windows else "schedule"
    initial, betas = initial_values(name, param_groups, key)
    a, cx, cu = np.ones(total), np.zeros(total), np.zeros(total)
    base = _bases(windows)
    maps = [
        (w, w.scheduler.maps(np.arange(len(w.steps), dtype=np.int64)), b)
        for w, b in zip(windows, base, strict=True)
        if len(w.steps)
    ]
    # Step 0: every scheduler's constructor step, in list order. Later steps: the iteration-based
    # ones after each step (list order), then at an epoch's first step the epoch-based ones.
    for w, m, b in maps:
        if w.steps[0] == 0:
            _apply(a, cx, cu, np.array([0]), _take(m, slice(0, 1)), b)
    for w, m, b in sorted(maps, key=lambda item: item[0].epoch_stepped):
        skip = 1 if w.steps[0] == 0 else 0
        if len(w.steps) > skip:
            _apply(a, cx, cu, w.steps[skip:], _take(m, slice(skip, None)), b)
    gain = a.copy() if keep_gain else None
    scale, offset = scan_changes(a, cx, cu)
    return ParamCurve(name, initial, scale, offset, gain, betas)


def _bases(windows: list[Window]) -> list[float | None]:
    """Each scheduler's `base`: None = the group's initial value, or the constant a OneCycle set before it."""
    out, override = [], None
    for w in windows:
        out.append(override)
        override = w.scheduler.base_override() or override
    return out


def _take(maps: Any, part: slice) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    return tuple(None if m is None else m[part] for m in maps)


def _apply(
    a: np.ndarray, cx: np.ndarray, cu: np.ndarray, idx: np.ndarray, maps: tuple, base: float | None
) -> None:
    """Compose `x -> ma x + mu + mv base` after the maps already at steps `idx`."""
    ma, mu, mv = maps
    a[idx] *= ma
    cx[idx] *= ma
    cu[idx] *= ma
    if mu is not None:
        cu[idx] += mu
    if mv is not None:
        if base is None:
            cx[idx] += mv
        else:
            cu[idx] += mv * base


def scan_changes(a: np.ndarray, cx: np.ndarray, cu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X, U) for every step, scanning only the steps whose map changes the value: elsewhere the value
    is held bit for bit, as MMEngine holds it (and epoch-stepped schedules cost almost nothing)."""
    changes = (a != 1.0) | (cx != 0.0) | (cu != 0.0)
    at = np.flatnonzero(changes)
    scale, offset = affine_scan(a[at], cx[at], cu[at])
    held = np.cumsum(changes)  # 1 + index into `at` of the last change at or before each step; 0: none yet
    return np.r_[1.0, scale][held], np.r_[0.0, offset][held]


def affine_scan(a: np.ndarray, cx: np.ndarray, cu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix-compose the per-step maps (x0, 1) -> (a x + cx x0 + cu) from x = x0: returns (X, U)
    with x_t = X[t] x0 + U[t]. Hillis-Steele scan: log2(n) vector passes, no division, zeros are fine."""
    a, cx, cu = a.copy(), cx.copy(), cu.copy()
    d = 1
    while d < len(a):
        head = a[d:]
        cx[d:] += head * cx[:-d]
        cu[d:] += head * cu[:-d]
        a[d:] = head * a[:-d]
        d *= 2
    return a + cx, cu
