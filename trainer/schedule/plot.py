"""The schedule visualization tool's work (MMPretrain's vis_scheduler): a recipe's curves as PNG and JSON.

Nothing is trained and no data is read: the param groups come from the optimizer built on a "meta"
model, and the curves are the ones the loop will apply, value in force during each step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from trainer.schedule.build import Schedule

MAX_POINTS = 20_000
LABELS = {"lr": "Learning rate", "momentum": "Momentum", "weight_decay": "Weight decay"}


def write_json(schedule: Schedule, path: str | Path) -> None:
    """DESIGN.md's JSON: steps_per_epoch, total_steps, and one list per param group for lr and momentum
    (momentum [] where it is not scheduled; other scheduled hyper-parameters under their own names)."""
    classes = schedule.distinct_groups()
    rows: dict[str, list[str]] = {}
    for name in schedule.params:
        per_group: list[str] = [""] * len(schedule.group_names)
        for members in classes:
            text = json.dumps(schedule.curve(name, members[:1])[0].tolist())
            for g in members:
                per_group[g] = text
        rows[name] = per_group
    rows.setdefault("momentum", [])
    head = {
        "steps_per_epoch": schedule.steps_per_epoch,
        "total_steps": schedule.total_steps,
        "group_names": schedule.group_names,
    }
    with open(path, "w") as f:
        f.write(json.dumps(head)[:-1])
        for name, texts in rows.items():
            f.write(f", {json.dumps(name)}: [" + ", ".join(texts) + "]")
        f.write("}\n")


def plot(schedule: Schedule, path: str | Path, title: str) -> None:
    """One PNG: a panel per scheduled hyper-parameter (lr first), one line per distinct curve of the
    groups, steps on the x axis with epoch marks and an epoch axis on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    names = schedule.params
    total, spe = schedule.total_steps, schedule.steps_per_epoch
    stride = max(1, math.ceil(total / MAX_POINTS))
    steps = np.unique(np.r_[np.arange(0, total, stride), total - 1])
    fig, axes = plt.subplots(
        len(names), 1, sharex=True, squeeze=False, figsize=(11, 1.2 + 3.4 * len(names)), layout="constrained"
    )
    for ax, name in zip(axes[:, 0], names, strict=True):
        classes = schedule.distinct_groups(name)
        many = len(classes) > 10
        cmap = plt.get_cmap("viridis" if many else "tab10")
        for i, members in enumerate(classes):
            color = cmap(i / (len(classes) - 1)) if many else cmap(i)
            values = schedule.curve(name, members[:1])[0][steps]
            ax.plot(steps, values, color=color, linewidth=1.4, label=_label(schedule, name, members))
        _epoch_marks(ax, total, spe)
        ax.set_ylabel(LABELS.get(name, name) + (" (betas[0])" if any(schedule.curves[name].betas) else ""))
        ax.grid(True, axis="y", alpha=0.3)
        ax.margins(x=0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        if len(classes) <= 12:
            ax.legend(loc="best", fontsize="small", title="param groups", title_fontsize="small")
        else:
            colorbar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap), ax=ax, ticks=[0, 1], pad=0.01)
            colorbar.ax.set_yticklabels(
                [_label(schedule, name, classes[0]), _label(schedule, name, classes[-1])], fontsize="x-small"
            )
            colorbar.set_label(f"{len(classes)} distinct groups", fontsize="small")
    axes[-1, 0].set_xlabel("Step (optimizer update)")
    axes[-1, 0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    top = axes[0, 0].secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe))
    top.set_xlabel("Epoch")
    fig.suptitle(
        f"{title}\n{spe:,} steps/epoch, {total:,} steps ({total / spe:g} epochs), "
        f"{len(schedule.group_names)} param groups",
        fontsize="medium",
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(schedule: Schedule, name: str, members: list[int]) -> str:
    if len(members) == len(schedule.group_names) > 1:
        shown = f"all {len(members)}"
    else:
        names = [schedule.group_names[g] for g in members]
        shown = ", ".join(names[:2]) + (f" +{len(names) - 2} more" if len(names) > 2 else "")
    return f"{shown} ({name} {schedule.curves[name].initial[members[0]]:.3g})"


def _epoch_marks(ax: Any, total: int, spe: int) -> None:
    epochs = math.ceil(total / spe)
    every = max(1, _nice(epochs / 30))
    for e in range(every, epochs, every):
        ax.axvline(e * spe, color="0.6", linewidth=0.6, linestyle=":", zorder=0)


def _nice(x: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= x."""
    if x <= 1:
        return 1
    scale = 10 ** math.floor(math.log10(x))
    return next(int(m * scale) for m in (1, 2, 5, 10) if m * scale >= x)
