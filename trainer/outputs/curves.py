"""Training curves of one or several runs as a PNG (scripts/plot_metrics.py): loss, lr and eval top-1 (and the
EMA's) against the step, read from each run's metrics.jsonl, with epoch marks as in plot_schedule.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import RecipeError
from trainer.outputs.export import METRICS_FILE, read_metrics


@dataclass
class Curves:
    """One run's curves: each a (steps, values) pair of arrays, one point per logged step."""

    name: str
    loss: tuple[np.ndarray, np.ndarray]
    lr: tuple[np.ndarray, np.ndarray]
    eval: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """eval_loss, eval_top1, ema_eval_top1, ... where the run has them."""
    epoch_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """The step at which each epoch 1, 2, ... ended (interpolated from the records' epoch)."""


def load_curves(run_dir: str | Path, name: str | None = None) -> Curves:
    """The curves of the run in `run_dir`; a resumed run's repeated steps keep their last record."""
    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).is_file():
        what = (
            "no such directory" if not run_dir.is_dir() else f"not a run directory: it has no {METRICS_FILE}"
        )
        raise RecipeError("run_dir", what, file=str(run_dir))
    train: dict[int, dict[str, Any]] = {}
    evals: dict[int, dict[str, Any]] = {}
    for record in read_metrics(run_dir):
        if not isinstance(record.get("step"), int):
            continue
        if "loss" in record:
            train[record["step"]] = record
        if "eval_top1" in record or "eval_loss" in record:
            evals[record["step"]] = record
    if not train and not evals:
        raise RecipeError("run_dir", f"{METRICS_FILE} has no step or eval records yet", file=str(run_dir))
    steps = np.array(sorted(train), dtype=np.int64)
    rows = [train[s] for s in steps]
    curves = Curves(
        name=name or run_dir.name,
        loss=(steps, np.array([_num(r.get("loss")) for r in rows])),
        lr=(steps, np.array([_num(r.get("lr")) for r in rows])),
    )
    eval_steps = np.array(sorted(evals), dtype=np.int64)
    keys = sorted(
        {k for r in evals.values() for k in r if k.endswith(("eval_top1", "eval_top5", "eval_loss"))}
    )
    for key in keys:
        values = np.array([_num(evals[s].get(key)) for s in eval_steps])
        curves.eval[key] = (eval_steps, values)
    epochs = np.array([_num(r.get("epoch")) for r in rows])
    if len(steps) and np.isfinite(epochs).all() and epochs[-1] >= 1:
        curves.epoch_steps = np.interp(np.arange(1, math.floor(epochs[-1]) + 1), epochs, steps)
    return curves


def plot_curves(runs: list[Curves], path: str | Path, title: str | None = None) -> None:
    """One PNG: loss, learning rate and eval top-1 panels sharing the step axis, a colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(11, 10), layout="constrained")
    loss_ax, lr_ax, top1_ax = axes
    colors = plt.get_cmap("tab10")
    has_ema = any("ema_eval_top1" in run.eval for run in runs)
    has_eval = any("eval_top1" in run.eval for run in runs)
    for i, run in enumerate(runs):
        color = colors(i % 10)
        loss_ax.plot(*run.loss, color=color, linewidth=1.3, label=run.name)
        if "eval_loss" in run.eval:
            loss_ax.plot(*run.eval["eval_loss"], color=color, linestyle="--", marker="o", markersize=3.5)
        lr_ax.plot(*run.lr, color=color, linewidth=1.3, label=run.name)
        if "eval_top1" in run.eval:
            steps, top1 = run.eval["eval_top1"]
            top1_ax.plot(
                steps, top1, color=color, marker="o", markersize=3.5, label=f"{run.name}: {top1[-1]:.2f} %"
            )
        if "ema_eval_top1" in run.eval:
            steps, top1 = run.eval["ema_eval_top1"]
            top1_ax.plot(
                steps, top1, color=color, linestyle="--", marker="s", markersize=3,
                label=f"{run.name} EMA: {top1[-1]:.2f} %",
            )  # fmt: skip
        for ax in axes:
            _epoch_marks(ax, run.epoch_steps, color if len(runs) > 1 else "0.6")
    loss_ax.set_ylabel("Loss")
    losses = np.concatenate(
        [run.loss[1] for run in runs] + [r.eval["eval_loss"][1] for r in runs if "eval_loss" in r.eval]
    )
    losses = losses[np.isfinite(losses)]
    if len(losses) and losses.min() > 0 and losses.max() / losses.min() > 20:
        loss_ax.set_yscale("log")
    styles = [Line2D([], [], color="0.3", linewidth=1.3, label="train (logged window mean)")]
    if any("eval_loss" in run.eval for run in runs):
        styles.append(Line2D([], [], color="0.3", linestyle="--", marker="o", markersize=3.5, label="eval"))
    legend = loss_ax.legend(handles=styles, loc="upper right", fontsize="small")
    loss_ax.add_artist(legend)
    loss_ax.legend(loc="upper center", fontsize="small", title="runs", title_fontsize="small")
    lr_ax.set_ylabel("Learning rate")
    lr_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    top1_ax.set_ylabel("Eval top-1 (%)" + (" — dashed: EMA" if has_ema else ""))
    if has_eval:
        top1_ax.legend(loc="lower right", fontsize="small", title="final top-1", title_fontsize="small")
    else:
        top1_ax.text(0.5, 0.5, "no evaluation in these runs", transform=top1_ax.transAxes, ha="center")
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
    top1_ax.set_xlabel("Step (optimizer update)")
    top1_ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    spe = _common_steps_per_epoch(runs)
    if spe:
        top = loss_ax.secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe))
        top.set_xlabel("Epoch")
    top1_ax.set_xlim(left=0)
    steps_total = max(
        int(max(run.loss[0].max(initial=0), *(s.max(initial=0) for s, _ in run.eval.values())))
        for run in runs
    )
    default = ", ".join(run.name for run in runs[:4]) + (f" +{len(runs) - 4} more" if len(runs) > 4 else "")
    fig.suptitle(f"{title or default}: training curves ({steps_total:,} steps)", fontsize="medium")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _epoch_marks(ax: Any, epoch_steps: np.ndarray, color: Any) -> None:
    """A dotted line where each epoch ended (every 2nd, 5th, ... when there are many), as plot_schedule's."""
    every = max(1, _nice(len(epoch_steps) / 30))
    for e in range(every, len(epoch_steps) + 1, every):
        ax.axvline(epoch_steps[e - 1], color=color, linewidth=0.6, linestyle=":", zorder=0, alpha=0.8)


def _common_steps_per_epoch(runs: list[Curves]) -> float | None:
    """The steps per epoch every run shares (for an epoch axis on top), else None."""
    values = set()
    for run in runs:
        if not len(run.epoch_steps):
            return None
        values.add(round(float(run.epoch_steps[0]), 6))
    return values.pop() if len(values) == 1 else None


def _nice(x: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= x."""
    if x <= 1:
        return 1
    scale = 10 ** math.floor(math.log10(x))
    return next(int(m * scale) for m in (1, 2, 5, 10) if m * scale >= x)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def run_names(run_dirs: list[str | Path]) -> list[str]:
    """Each run's folder name; where two share one, with their parents' names too."""
    paths = [Path(p).resolve() for p in run_dirs]
    names = [p.name for p in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < 4:
        depth += 1
        names = ["/".join(p.parts[-depth:]) for p in paths]
    return names
