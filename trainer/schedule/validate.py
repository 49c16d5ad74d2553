"""Check `[[schedule]]` entries without data or model: types, arguments, windows vs. training length."""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from trainer.errors import RecipeError, did_you_mean
from trainer.schedule.schedulers import REQUIRED, SCHEDULERS, Arg, ParamScheduler
from trainer.values import is_finite_number

_KIND_TEXT = {
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str": "a string",
    "ints": "a list of integers",
    "numbers": "a list of numbers",
}
_NOT_OURS = {
    "last_step": "not supported: a resumed run recomputes the schedule from its step",
    "verbose": "not supported: scripts/plot_schedule.py shows every value",
}


@dataclass
class Entry:
    """One checked entry: its class, every argument (defaults filled) in the units the recipe wrote."""

    index: int
    cls: type[ParamScheduler]
    args: dict[str, Any]
    dropped: bool = False
    """It would begin at or after the end of training: never applied (MMEngine's behaviour), not built."""
    notes: list[str] = field(default_factory=list)
    """What acts otherwise than written because training ends first (warning lines)."""
    lenient: bool = False
    """What lies past the end of training is a note, not an error (train.schedule_past_end = "warn")."""

    @property
    def key(self) -> str:
        return f"schedule[{self.index}]"

    @property
    def by_epoch(self) -> bool:
        return self.args["by_epoch"]

    @property
    def converted(self) -> bool:
        return self.args["convert_to_iter_based"]

    @property
    def epoch_stepped(self) -> bool:
        """True where begin/end count epochs and the scheduler steps once per epoch."""
        return self.by_epoch and not self.converted


def validate_schedule(
    entries: list[dict[str, Any]],
    train_cfg: dict[str, Any],
    hyperparams: Collection[str] | None = None,
    optimizer_name: str = "the optimizer",
) -> None:
    """Raise RecipeError (`schedule[i].<arg>`) for the first problem in `entries`; see `parse_schedule`.
    Print a warning line for each entry that acts otherwise than written because training ends first.

    `hyperparams`: the optimizer's arguments (None: unknown); each entry must schedule one of them
    (momentum may live in Adam's `betas`), so a momentum schedule on Adagrad fails before anything is built.
    """
    parsed = parse_schedule(entries, train_cfg)
    if hyperparams is not None:
        check_scheduled_hyperparams(parsed, hyperparams, optimizer_name)
    warn([note for entry in parsed for note in entry.notes])


def warn(notes: list[str]) -> None:
    """Print `notes` as `schedule warning:` lines (the first process only)."""
    if int(os.environ.get("RANK", "0")) == 0:
        for note in notes:
            print(f"schedule warning: {note}", file=sys.stderr, flush=True)


def check_scheduled_hyperparams(
    parsed: list[Entry], hyperparams: Collection[str], optimizer_name: str = "the optimizer"
) -> None:
    """Every entry's hyper-parameter is one the optimizer has (momentum: `momentum` or `betas`)."""
    takes = f"(it takes: {', '.join(hyperparams)})"
    for entry in parsed:
        name = entry.cls.param or entry.args["param_name"]
        if name in hyperparams or (name == "momentum" and "betas" in hyperparams):
            continue
        if name == "momentum":
            raise RecipeError(
                f"{entry.key}.type",
                f"{entry.args['type']} schedules momentum, but {optimizer_name} has neither `momentum` "
                f"nor `betas` {takes}",
            )
        key = f"{entry.key}.param_name" if entry.cls.param is None else f"{entry.key}.type"
        raise RecipeError(
            key, f"{optimizer_name} has no hyper-parameter {name!r}{did_you_mean(name, hyperparams)} {takes}"
        )


def parse_schedule(entries: list[dict[str, Any]], train_cfg: dict[str, Any]) -> list[Entry]:
    """Check every entry (type, arguments, windows against `train_cfg`) and return them parsed."""
    if not isinstance(entries, list):
        raise RecipeError("schedule", f"expected a list of [[schedule]] tables, got {type(entries).__name__}")
    epochs, _ = training_length(train_cfg)
    lenient = train_cfg.get("schedule_past_end", "error") == "warn"
    parsed = [parse_entry(i, entry, epochs, lenient) for i, entry in enumerate(entries)]
    one_cycles = [e for e in parsed if e.cls.__name__.startswith("OneCycle")]
    if len(one_cycles) > 1:
        raise RecipeError(
            f"{one_cycles[1].key}.type",
            f"a second OneCycle scheduler (the first is "
            f"{one_cycles[0].key}); each one overwrites every group's lr range",
        )
    return parsed


def training_length(train_cfg: dict[str, Any]) -> tuple[int | None, int | None]:
    """(epochs, max_steps): exactly one is set."""
    epochs, max_steps = train_cfg.get("epochs"), train_cfg.get("max_steps")
    if (epochs is None) == (max_steps is None):
        raise RecipeError("train", "set train.epochs or train.max_steps (exactly one)")
    return epochs, max_steps


def parse_entry(index: int, entry: Any, epochs: int | None, lenient: bool = False) -> Entry:
    """Check one entry; `epochs` is the training length in epochs, or None for max_steps training;
    `lenient`: what lies past the end of training is a note (train.schedule_past_end = "warn")."""
    key = f"schedule[{index}]"
    if not isinstance(entry, dict):
        raise RecipeError(key, f"expected a table with `type` and its arguments, got {type(entry).__name__}")
    if "type" not in entry:
        raise RecipeError(f"{key}.type", 'required key is missing (e.g. type = "CosineAnnealingLR")')
    name = entry["type"]
    if not isinstance(name, str):
        raise RecipeError(f"{key}.type", f"expected a scheduler name, got {name!r}")
    cls = SCHEDULERS.get(name, key=f"{key}.type")
    if not (isinstance(cls, type) and issubclass(cls, ParamScheduler)):
        raise RecipeError(f"{key}.type", f"{name!r} is not a trainer.schedule.ParamScheduler subclass")
    specs = cls.all_args()
    for arg in entry:
        if arg == "type" or arg in specs:
            continue
        if arg in _NOT_OURS:
            raise RecipeError(f"{key}.{arg}", _NOT_OURS[arg])
        hint = did_you_mean(arg, specs)
        listing = "" if hint else f" (allowed: {', '.join(specs)})"
        raise RecipeError(f"{key}.{arg}", f"unknown argument for {name}{hint}{listing}")
    by_epoch = _value(key, "by_epoch", entry, specs["by_epoch"], converted=False)
    convert = _value(key, "convert_to_iter_based", entry, specs["convert_to_iter_based"], converted=False)
    if convert and not by_epoch:
        raise RecipeError(
            f"{key}.convert_to_iter_based",
            "only by_epoch = true entries are converted "
            "(their epochs become steps); with by_epoch = false they already count steps",
        )
    converted = by_epoch and convert
    args = {arg: _value(key, arg, entry, spec, converted) for arg, spec in specs.items()}
    args["type"] = name
    scheduler = cls(**{k: v for k, v in args.items() if k != "type"})
    scheduler.check(key)
    parsed = Entry(index, cls, args, lenient=lenient)
    _check_window(parsed, epochs)
    return parsed


def _value(key: str, arg: str, entry: dict[str, Any], spec: Arg, converted: bool) -> Any:
    if arg not in entry:
        if spec.default is REQUIRED:
            raise RecipeError(f"{key}.{arg}", f"{entry['type']} needs `{arg}`")
        return list(spec.default) if isinstance(spec.default, list) else spec.default
    value = entry[arg]
    kind = spec.kind
    if spec.per_epoch and converted:  # epochs may be fractional once they convert to steps
        kind = {"int": "number", "ints": "numbers"}.get(kind, kind)
    if not _is_kind(value, kind):
        extra = (
            " (fractional epochs need convert_to_iter_based = true)"
            if spec.per_epoch
            and kind in ("int", "ints")
            and _is_kind(value, "numbers" if kind == "ints" else "number")
            else ""
        )
        raise RecipeError(f"{key}.{arg}", f"expected {_KIND_TEXT[kind]}, got {value!r}{extra}")
    if spec.choices and value not in spec.choices:
        raise RecipeError(f"{key}.{arg}", f"got {value!r}; allowed: {', '.join(map(repr, spec.choices))}")
    return list(value) if isinstance(value, list) else value


def _is_kind(value: Any, kind: str) -> bool:
    if kind in ("ints", "numbers"):
        return isinstance(value, list) and all(
            _is_kind(v, kind[:-1] if kind == "ints" else "number") for v in value
        )
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return is_finite_number(value)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def _check_window(entry: Entry, epochs: int | None) -> None:
    """begin < end; epoch-counted windows and milestones inside training; by_epoch needs epochs. With
    `entry.lenient` (train.schedule_past_end = "warn", MMEngine's behaviour) what lies past the end of
    training is a note instead: a window that begins there is dropped, one that ends there is cut (its curve
    as written), milestones there never apply, and an epoch-stepped entry in max_steps training steps at
    epoch starts."""
    args, key, lenient = entry.args, entry.key, entry.lenient
    begin, end = args["begin"], args["end"]
    unit = "epochs" if entry.by_epoch else "steps"
    if begin < 0:
        raise RecipeError(f"{key}.begin", f"must be >= 0, got {begin!r}")
    if end is not None and not end > begin:
        raise RecipeError(f"{key}.end", f"must be after begin ({begin} {unit}), got {end!r}")
    if entry.epoch_stepped and epochs is None and not entry.cls.needs_metric and not lenient:
        raise RecipeError(
            f"{key}.by_epoch",
            "training is max_steps-based, so an epoch-stepped scheduler "
            "would never step (MMEngine keeps it at its first value); by_epoch defaults to true: "
            "set by_epoch = false and count begin/end in steps, or convert_to_iter_based = true",
        )
    if not entry.by_epoch or epochs is None:
        return
    name, length = f"{key} ({args['type']})", f"training ends at epoch {epochs} (train.epochs)"
    last = min(end, epochs) if end is not None else epochs
    if not begin < last:  # begin < end: it begins at or after the last epoch
        entry.dropped = lenient
        past_end(
            entry,
            f"{key}.begin",
            f"{begin} is not before the end of the window ({last} epochs, "
            f"train.epochs = {epochs}): the scheduler would never act",
            f"{name} begins at epoch {begin:g} and {length}: dropped, as MMEngine never applies it",
        )
        return
    if end is not None and end > epochs:
        past_end(
            entry,
            f"{key}.end",
            f"{end} is beyond the last epoch (train.epochs = {epochs}); leave `end` out to end with training",
            f"{name} ends at epoch {end:g} and {length}: cut there, its curve as written (as MMEngine)",
        )
    late = []
    for m in args.get("milestones") or ():
        if begin + m >= last:
            where = f" (epoch {begin + m}: milestones count from begin = {begin})" if begin else ""
            if end is not None and begin + m >= end or not lenient:
                raise RecipeError(
                    f"{key}.milestones",
                    f"milestone {m}{where} is not before the end ({last} epochs, train.epochs = {epochs}); "
                    "it would never apply" + ("" if end is not None and begin + m >= end else PAST_END_HINT),
                )
            late.append(m)
    if late:
        where = f" (counted from begin = {begin:g})" if begin else ""
        entry.notes.append(
            f"{key}.milestones {', '.join(f'{m:g}' for m in late)}{where} are not before epoch {last:g} and"
            f" {length}: never applied, as in MMEngine"
        )


PAST_END_HINT = '; or set train.schedule_past_end = "warn" to cut the schedule there, as MMEngine does'


def past_end(entry: Entry, key: str, error: str, note: str) -> None:
    """Something of `entry` lies past the end of training: a RecipeError, or with `entry.lenient` a note."""
    if not entry.lenient:
        raise RecipeError(key, error + PAST_END_HINT)
    entry.notes.append(note)
