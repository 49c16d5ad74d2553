"""Units: steps per epoch, training length, and each entry's window in optimizer steps.

One step is one optimizer update. An iteration-based entry counts steps; a `by_epoch` entry counts
epochs and steps once per epoch (at the epoch's first step), unless `convert_to_iter_based` turns its
epoch arguments into steps the way MMEngine's `build_iter_from_epoch` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trainer.errors import RecipeError
from trainer.schedule.schedulers import ParamScheduler
from trainer.schedule.validate import PAST_END_HINT, Entry


def batches_per_epoch(
    num_samples: int, batch_size: int, *, num_processes: int = 1, drop_last: bool = True, accumulate: int = 1
) -> int:
    """Micro-batches each process sees per epoch in the global order (trainer.data.order): `accumulate` per
    whole global batch of batch_size x num_processes x accumulate samples, and without `drop_last` the rest
    as one more, shorter step."""
    share = batch_size * num_processes
    full, rest = divmod(num_samples, share * accumulate)
    return full * accumulate + (0 if drop_last or rest == 0 else -(-rest // share))


@dataclass(frozen=True)
class TrainingLength:
    """How long training is, computed once from the loader's length: micro-batches and optimizer steps per
    epoch, total steps, and whether intervals count epochs (`train.epochs`) or steps (`train.max_steps`)."""

    batches_per_epoch: int
    accumulate: int
    total_steps: int
    by_epoch: bool

    @classmethod
    def of(cls, batches_per_epoch: int, train_cfg: dict) -> TrainingLength:
        """The length of training on a loader of `batches_per_epoch` micro-batches per process."""
        accumulate = train_cfg.get("accumulate", 1)
        steps = -(-batches_per_epoch // accumulate)
        return cls(
            batches_per_epoch=batches_per_epoch,
            accumulate=accumulate,
            total_steps=total_steps(train_cfg.get("epochs"), train_cfg.get("max_steps"), steps),
            by_epoch=train_cfg.get("epochs") is not None,
        )

    @property
    def steps_per_epoch(self) -> int:
        """ceil(batches_per_epoch / accumulate): without drop_last the last step of an epoch may be short."""
        return -(-self.batches_per_epoch // self.accumulate)

    def epochs_done(self, epoch: int, batches_done: int) -> float:
        """Where training stands in epochs: whole epochs plus the share of this epoch's steps done (the same
        on any number of processes and with any accumulation of one global batch)."""
        return epoch + -(-batches_done // self.accumulate) / self.steps_per_epoch

    def window(self, batches_done: int) -> int:
        """The real length of the accumulation window that micro-batch `batches_done` (0-based) belongs to."""
        start = (batches_done // self.accumulate) * self.accumulate
        return min(self.accumulate, self.batches_per_epoch - start)


def steps_per_epoch(
    dataset_size: int, batch_size: int, accumulate: int, num_processes: int = 1, drop_last: bool = True
) -> int:
    """Optimizer steps per epoch: whole global batches of batch_size x num_processes x accumulate samples,
    and without `drop_last` one more, shorter step for the rest."""
    for name, value in (
        ("dataset_size", dataset_size),
        ("batch_size", batch_size),
        ("accumulate", accumulate),
        ("num_processes", num_processes),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    batches = batches_per_epoch(
        dataset_size, batch_size, num_processes=num_processes, drop_last=drop_last, accumulate=accumulate
    )
    if batches < 1:
        raise ValueError(
            f"{dataset_size} samples give no full step of {batch_size} x {num_processes} x {accumulate}"
        )
    return TrainingLength.of(batches, {"accumulate": accumulate, "max_steps": 1}).steps_per_epoch


def total_steps(epochs: int | None, max_steps: int | None, steps_per_epoch: int) -> int:
    """Length of training in optimizer steps."""
    return max_steps if max_steps is not None else epochs * steps_per_epoch


@dataclass
class Window:
    """A scheduler built in step units, and the global steps at which it acts (its local steps 0, 1, ...)."""

    entry: Entry
    scheduler: ParamScheduler
    steps: np.ndarray

    @property
    def epoch_stepped(self) -> bool:
        return self.entry.epoch_stepped


def resolve(
    entry: Entry, steps_per_epoch: int, epochs: int | None, total: int, notes: list[str] | None = None
) -> Window | None:
    """Build `entry`'s scheduler in the units it steps in, with MMEngine's defaults for end and T_max.

    What lies past the end of training in step units is a RecipeError, or with train.schedule_past_end =
    "warn" a line in `notes`: then a window that begins there is None (MMEngine never applies it), one that
    ends there is cut, milestones there never apply."""
    lenient, notes = entry.lenient, [] if notes is None else notes
    args = {k: v for k, v in entry.args.items() if k not in ("type", "convert_to_iter_based")}
    key = entry.key
    if entry.epoch_stepped:
        default_end = epochs if epochs is not None else math.inf
        last_epoch = epochs if epochs is not None else math.ceil(total / steps_per_epoch)
        args["end"] = args["end"] if args["end"] is not None else default_end
        first, stop = args["begin"], min(args["end"], last_epoch)
        if epochs is None and first >= stop:  # max_steps training that ends before its first epoch
            notes.append(
                f"{key} ({entry.args['type']}) begins at epoch {first:g} and training ends in epoch"
                f" {last_epoch} (train.max_steps = {total}): dropped, as MMEngine never applies it"
            )
            return None
        if epochs is None and not entry.cls.needs_metric:
            notes.append(
                f"{key} ({entry.args['type']}) steps once per epoch and training counts steps"
                f" (train.max_steps = {total}): it steps at each epoch start (MMEngine's iteration loop"
                " would hold its first value; convert_to_iter_based = true steps it every step)"
            )
        steps = np.arange(first, max(first, stop), dtype=np.int64) * steps_per_epoch
    else:
        if entry.converted:
            args = _to_steps(entry, args, steps_per_epoch, total)
        args["end"] = args["end"] if args["end"] is not None else total
        args["by_epoch"] = False
        if (
            lenient
            and args["end"] > total
            and args["begin"] < total
            and (epochs is None or not entry.by_epoch)
        ):
            notes.append(
                f"{key} ({entry.args['type']}) ends at step {args['end']:g} and training ends at step"
                f" {total}: cut there, its curve as written (as MMEngine)"
            )
        if args["begin"] >= total:
            if not lenient:
                raise RecipeError(
                    f"{key}.begin",
                    f"step {args['begin']:g} is not before the end of training "
                    f"({total} steps): the scheduler would never act{PAST_END_HINT}",
                )
            notes.append(
                f"{key} ({entry.args['type']}) begins at step {args['begin']:g} and training ends at step"
                f" {total}: dropped, as MMEngine never applies it"
            )
            return None
        if not args["end"] > args["begin"]:
            raise RecipeError(
                f"{key}.end",
                f"the window [{entry.args['begin']}, {entry.args['end']}) epochs is "
                f"[{args['begin']}, {args['end']}) steps at {steps_per_epoch} steps/epoch: empty",
            )
        steps = np.arange(args["begin"], min(args["end"], total), dtype=np.int64)
    scheduler = entry.cls(**args)
    scheduler.check_window(key, len(steps))
    if not entry.epoch_stepped:  # epoch-counted ones were said in epochs when the recipe was checked
        _check_step_milestones(entry, scheduler, total, notes if epochs is None or not entry.by_epoch else [])
    return Window(entry, scheduler, steps)


def _to_steps(entry: Entry, args: dict, steps_per_epoch: int, total: int) -> dict:
    """MMEngine's `build_iter_from_epoch`: begin/end truncate to whole steps, the rest scale exactly."""
    out = dict(args)
    out["begin"] = int(args["begin"] * steps_per_epoch)
    out["end"] = int(args["end"] * steps_per_epoch) if args["end"] is not None else total
    for name, spec in entry.cls.args.items():
        if spec.per_epoch and out.get(name) is not None:
            value = out[name]
            out[name] = (
                [v * steps_per_epoch for v in value] if isinstance(value, list) else value * steps_per_epoch
            )
    return out


def _check_step_milestones(entry: Entry, scheduler: ParamScheduler, total: int, notes: list[str]) -> None:
    """Milestones past the window's own end are an error; past the end of training too, or a note."""
    late = []
    for m in getattr(scheduler, "milestones", None) or ():
        stop = min(scheduler.end, total)
        if scheduler.begin + m >= scheduler.end or (scheduler.begin + m >= total and not entry.lenient):
            raise RecipeError(
                f"{entry.key}.milestones",
                f"milestone {m:g} steps{_counted_from(scheduler.begin, m)} is not before the end "
                f"(step {stop}, training has {total} steps); it would never apply"
                + ("" if scheduler.begin + m >= scheduler.end else PAST_END_HINT),
            )
        if scheduler.begin + m >= total:
            late.append(m)
    if late:
        notes.append(
            f"{entry.key}.milestones {', '.join(f'{m:g}' for m in late)} steps"
            f"{_counted_from(scheduler.begin, late[0]) if scheduler.begin else ''} are not before the end of"
            f" training (step {total}): never applied, as in MMEngine"
        )


def _counted_from(begin: int, milestone: float) -> str:
    return f" (step {begin + milestone:g}: milestones count from begin = {begin})" if begin else ""
