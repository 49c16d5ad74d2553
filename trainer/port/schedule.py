"""`train_cfg` and `param_scheduler`: training length, evaluation interval and the schedulers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.errors import RecipeError
from trainer.port.report import Report

RENAMED = {"CosineAnnealingWeightDecay": ("CosineAnnealingParamScheduler", "weight_decay")}
"""MMPretrain's own schedulers that are an MMEngine generic scheduler on one hyper-parameter."""
DROPPED = {"_scope_": None, "verbose": "scripts/plot_schedule.py shows every value"}


@dataclass
class TrainingPort:
    """[train] length keys, [eval] and [[schedule]]."""

    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    schedule: list[dict[str, Any]] = field(default_factory=list)
    by_epoch: bool = True


def map_training(cfg: dict[str, Any], accumulate: int, report: Report) -> TrainingPort:
    """Length from `train_cfg`, schedulers from `param_scheduler`; iteration counts become optimizer steps
    (MMEngine counts micro-batches)."""
    train_cfg = cfg.get("train_cfg")
    if not isinstance(train_cfg, dict):
        raise RecipeError("train_cfg", "the config has no train_cfg: the training length is unknown")
    port = TrainingPort()
    kind = train_cfg.get("type")
    by_epoch = train_cfg.get("by_epoch", kind != "IterBasedTrainLoop")
    if kind not in (None, "EpochBasedTrainLoop", "IterBasedTrainLoop"):
        raise RecipeError("train_cfg.type", f"{kind!r}: only epoch- or iteration-based training loops port")
    port.by_epoch = by_epoch
    if by_epoch:
        if not isinstance(train_cfg.get("max_epochs"), int):
            raise RecipeError("train_cfg.max_epochs", "an epoch-based loop needs max_epochs (an integer)")
        port.train["epochs"] = train_cfg["max_epochs"]
    else:
        if not isinstance(train_cfg.get("max_iters"), int):
            raise RecipeError("train_cfg.max_iters", "an iteration-based loop needs max_iters (an integer)")
        port.train["max_steps"] = _steps(train_cfg["max_iters"], accumulate, "train_cfg.max_iters", report)
    _evaluation(cfg, train_cfg, by_epoch, accumulate, port, report)
    known = ("type", "by_epoch", "max_epochs", "max_iters", "val_interval", "val_begin")
    for arg in train_cfg:
        if arg not in known:
            report.skip(f"train_cfg.{arg}", f"{train_cfg[arg]!r} is not a recipe setting")
    entries = cfg.get("param_scheduler")
    if isinstance(entries, dict):
        entries = [entries]
    for i, entry in enumerate(entries or []):
        mapped = _entry(entry, i, by_epoch, accumulate, report)
        if mapped is not None and (not by_epoch or _fit_to_run(mapped, i, port.train["epochs"], report)):
            port.schedule.append(mapped)
    return port


def _fit_to_run(entry: dict[str, Any], i: int, epochs: int, report: Report) -> bool:
    """Epoch windows past the run as MMEngine runs them: milestones at or after the last epoch never fire,
    a cosine ending later is cut at the run's end with its period kept (T_max); False: drop the entry."""
    from trainer.schedule import SCHEDULERS

    if not entry.get("by_epoch", True):
        return True
    key, begin, end = f"param_scheduler[{i}]", entry.get("begin", 0), entry.get("end")
    milestones = entry.get("milestones")
    if isinstance(milestones, list) and any(begin + m >= epochs for m in milestones):
        late = [m for m in milestones if begin + m >= epochs]
        entry["milestones"] = [m for m in milestones if begin + m < epochs]
        report.note(
            f"{key}.milestones",
            f"{late} at or after the last epoch ({epochs}) never fire in MMEngine's run: left out",
        )
        if not entry["milestones"]:
            report.note(key, "no milestone fires within the run: the scheduler is left out")
            return False
    if not isinstance(end, (int, float)) or end <= epochs:
        return True
    entry["end"] = epochs
    if "T_max" in SCHEDULERS.get(entry["type"], key=f"{key}.type").all_args():
        entry.setdefault("T_max", end - begin)
        report.note(
            f"{key}.end",
            f"{end} is past the run's {epochs} epochs: MMEngine's cosine keeps its period (T_max = "
            f"{entry['T_max']}) and is cut at the run's end; so is the recipe's (end = {epochs})",
        )
    else:
        report.skip(
            f"{key}.end",
            f"{end} is past the run's {epochs} epochs: the recipe's window ends with the run, which changes "
            f"this {entry['type']}'s shape",
        )
    return True


def _evaluation(
    cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    by_epoch: bool,
    accumulate: int,
    port: TrainingPort,
    report: Report,
) -> None:
    if cfg.get("val_dataloader") is None or cfg.get("val_cfg") is None:
        port.eval["enabled"] = False
        return
    interval = train_cfg.get("val_interval", 1)
    if isinstance(interval, int) and interval >= 1:
        port.eval["interval"] = (
            interval if by_epoch else _steps(interval, accumulate, "train_cfg.val_interval", report)
        )
    if train_cfg.get("val_begin", 1) != 1:
        report.skip("train_cfg.val_begin", f"{train_cfg['val_begin']!r}: the recipe evaluates from the start")


def _steps(iterations: int, accumulate: int, key: str, report: Report) -> int:
    """Micro-batch iterations -> optimizer steps."""
    if accumulate == 1:
        return iterations
    steps = -(-iterations // accumulate)
    if iterations % accumulate:
        report.skip(
            key, f"{iterations} iterations are {iterations / accumulate:g} steps of {accumulate}: {steps}"
        )
    return steps


def _entry(
    entry: dict[str, Any], i: int, by_epoch_loop: bool, accumulate: int, report: Report
) -> dict | None:
    from trainer.schedule import SCHEDULERS

    key = f"param_scheduler[{i}]"
    out: dict[str, Any] = {}
    kind = entry.get("type")
    if kind in RENAMED:
        generic, param = RENAMED[kind]
        out = {"type": generic, "param_name": param}
        if entry.get("eta_min"):
            report.note(
                f"{key}.type",
                f"{kind} keeps groups whose weight decay starts at 0 at 0, the generic scheduler anneals "
                "them to eta_min: reported below where a group starts at 0",
            )
    elif kind in SCHEDULERS:
        out = {"type": kind}
    else:
        report.skip(f"{key}.type", f"{kind!r} is not one of MMEngine's schedulers the recipe has: dropped")
        return None
    for arg, value in entry.items():
        if arg == "type":
            continue
        if arg in DROPPED:
            if DROPPED[arg]:
                report.note(f"{key}.{arg}", DROPPED[arg])
            continue
        if arg == "last_step":
            report.skip(f"{key}.last_step", "a resumed run recomputes the schedule from its step")
            continue
        out[arg] = list(value) if isinstance(value, tuple) else value
    scheduler = SCHEDULERS.get(out["type"], key=f"{key}.type")
    by_epoch = out.get("by_epoch", True)
    converted = out.get("convert_to_iter_based", False)
    if not by_epoch_loop and by_epoch and not converted:
        report.skip(
            key,
            "by_epoch in an iteration-based loop: MMEngine steps it once, at the end; here it would step "
            "every epoch of the data",
        )
    if accumulate > 1 and (converted or not by_epoch):
        report.skip(
            key,
            f"MMEngine steps it per micro-batch, the recipe per update (accumulative_counts = {accumulate}):"
            " its iteration counts are divided by it, its values at update k are not MMEngine's at"
            f" micro-batch {accumulate}k + {accumulate - 1}",
        )
        if not by_epoch:
            for name, spec in scheduler.all_args().items():
                if spec.per_epoch and out.get(name) is not None:
                    out[name] = _scaled(out[name], accumulate)
    return out


def _scaled(value: Any, accumulate: int) -> Any:
    if isinstance(value, list):
        return [_scaled(v, accumulate) for v in value]
    return round(value / accumulate)
