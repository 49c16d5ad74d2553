"""Checks of the [optimizer] and [paramwise] recipe sections that need no model, and their parsed form."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from trainer.errors import RecipeError, did_you_mean
from trainer.optim.constructors import constructor_args, get_constructor
from trainer.optim.registry import OptimizerSignature, optimizer_class, optimizer_signature

MULTIPLIERS = (
    "bias_lr_mult",
    "bias_decay_mult",
    "norm_decay_mult",
    "flat_decay_mult",
    "dwconv_decay_mult",
    "dcn_offset_lr_mult",
)
DECAY_MULTIPLIERS = ("bias_decay_mult", "norm_decay_mult", "flat_decay_mult", "dwconv_decay_mult")
PARAMWISE_KEYS = (*MULTIPLIERS, "bypass_duplicate", "rules")
RULE_KEYS = ("lr_mult", "decay_mult", "freeze")


def is_number(value: Any) -> bool:
    """An int or float, not a bool (TOML's true would otherwise pass as 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A number that is neither nan nor ±inf (TOML writes both; either trains silently wrong)."""
    return is_number(value) and math.isfinite(value)


def rule_key(glob: str, field: str | None = None) -> str:
    """The dotted key path of a rule, quoted as the recipe loader prints it: ``paramwise.rules."head.*"``."""
    text = glob if re.fullmatch(r"[A-Za-z0-9_\-]+", glob) else f'"{glob}"'
    return f"paramwise.rules.{text}" + (f".{field}" if field else "")


@dataclass(frozen=True)
class Rule:
    """One ``[paramwise.rules]`` entry: an fnmatch glob on the full parameter name and its settings."""

    glob: str
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    freeze: bool = False
    sets_decay: bool = False

    @property
    def key(self) -> str:
        return rule_key(self.glob)


@dataclass(frozen=True)
class ParamwiseOptions:
    """``[paramwise]`` parsed: MMEngine's paramwise_cfg with globbed rules; None means "not set"."""

    bias_lr_mult: float | None = None
    bias_decay_mult: float | None = None
    norm_decay_mult: float | None = None
    flat_decay_mult: float | None = None
    dwconv_decay_mult: float | None = None
    dcn_offset_lr_mult: float | None = None
    bypass_duplicate: bool = False
    rules: tuple[Rule, ...] = ()
    empty: bool = True


@dataclass(frozen=True)
class BaseHyperparams:
    """The optimizer's lr and weight_decay: the recipe's value, else the class default (None: none)."""

    lr: float | None
    weight_decay: float | None


def validate_optimizer_cfg(optimizer_cfg: dict[str, Any]) -> None:
    """Check ``[optimizer]`` without a model: class exists, arguments fit its signature, values in range."""
    if not isinstance(optimizer_cfg, dict):
        raise RecipeError("optimizer", f"expected a table, got {optimizer_cfg!r}")
    cls = optimizer_class(optimizer_cfg)
    sig = optimizer_signature(cls)
    name = optimizer_cfg["type"]
    for arg, value in optimizer_cfg.items():
        if arg in ("type", "constructor"):
            continue
        if arg == sig.params_arg:
            raise RecipeError(f"optimizer.{arg}", "is filled in by the constructor with the param groups")
        if arg not in sig.args and not sig.takes_any:
            raise RecipeError(
                f"optimizer.{arg}",
                f"{name} does not take {arg!r}{did_you_mean(arg, sig.args)}"
                f" (it takes: {', '.join(sig.args)})",
            )
        _check_value(arg, value, sig)
    missing = [a for a in sig.required if a not in optimizer_cfg]
    if missing:
        raise RecipeError(f"optimizer.{missing[0]}", f"required by {name}")
    ctor = get_constructor(optimizer_cfg)
    validate_args = getattr(ctor, "validate_args", None)
    if validate_args is not None:
        validate_args(constructor_args(optimizer_cfg))


def optimizer_hyperparams(optimizer_cfg: dict[str, Any]) -> tuple[str, ...] | None:
    """The hyper-parameters every param group holds (the class's arguments); None where it takes **kwargs."""
    sig = optimizer_signature(optimizer_class(optimizer_cfg))
    return None if sig.takes_any else sig.args


def _check_value(arg: str, value: Any, sig: OptimizerSignature) -> None:
    key = f"optimizer.{arg}"
    if _has_nan(value):
        raise RecipeError(key, f"must be a number, not nan (got {value!r})")
    if arg in ("lr", "weight_decay"):
        if not is_finite_number(value) or value < 0:
            raise RecipeError(key, f"must be a finite number >= 0, got {value!r}")
    elif arg == "momentum":
        if not is_number(value) or not 0 <= value <= 1:
            raise RecipeError(key, f"must be a number in [0, 1], got {value!r}")
    elif arg == "betas":
        default = sig.defaults.get("betas")
        size = len(default) if isinstance(default, (tuple, list)) else 2
        if (
            not isinstance(value, (list, tuple))
            or len(value) != size
            or not all(is_number(b) and 0 <= b < 1 for b in value)
        ):
            raise RecipeError(key, f"must be a list of {size} numbers in [0, 1), got {value!r}")


def _has_nan(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    return isinstance(value, float) and math.isnan(value)


def base_hyperparams(optimizer_cfg: dict[str, Any]) -> BaseHyperparams:
    """Base lr / weight_decay that multipliers scale: the recipe's value, else the optimizer's default."""
    sig = optimizer_signature(optimizer_class(optimizer_cfg))

    def value(arg: str) -> float | None:
        if arg in optimizer_cfg:
            return optimizer_cfg[arg]
        default = sig.defaults.get(arg)
        return default if is_number(default) else None

    return BaseHyperparams(lr=value("lr"), weight_decay=value("weight_decay"))


def parse_paramwise(paramwise_cfg: dict[str, Any] | None, optimizer_cfg: dict[str, Any]) -> ParamwiseOptions:
    """Check ``[paramwise]`` (unknown keys, ranges, rules) and return it parsed; RecipeError on problems."""
    cfg = paramwise_cfg or {}
    if not isinstance(cfg, dict):
        raise RecipeError("paramwise", f"expected a table, got {cfg!r}")
    values: dict[str, Any] = {}
    for key, value in cfg.items():
        if key == "custom_keys":
            raise RecipeError(
                "paramwise.custom_keys",
                "use [paramwise.rules] (fnmatch globs on parameter names); "
                "MMEngine's key 'k' is the glob '*k*'",
            )
        if key not in PARAMWISE_KEYS:
            raise RecipeError(
                f"paramwise.{key}",
                f"unknown option{did_you_mean(key, PARAMWISE_KEYS)} (allowed: {', '.join(PARAMWISE_KEYS)})",
            )
        if key in MULTIPLIERS:
            if not is_finite_number(value) or value < 0:
                raise RecipeError(f"paramwise.{key}", f"must be a finite number >= 0, got {value!r}")
            values[key] = float(value)
        elif key == "bypass_duplicate":
            if not isinstance(value, bool):
                raise RecipeError("paramwise.bypass_duplicate", f"must be true or false, got {value!r}")
            values[key] = value
    rules = _parse_rules(cfg.get("rules", {}))
    base = base_hyperparams(optimizer_cfg)
    if base.weight_decay is None:
        uses_decay = [f"paramwise.{k}" for k in DECAY_MULTIPLIERS if k in values]
        uses_decay += [rule_key(r.glob, "decay_mult") for r in rules if r.sets_decay]
        if uses_decay:
            raise RecipeError(
                uses_decay[0], f"needs a weight decay: {optimizer_cfg['type']} has no weight_decay argument"
            )
    empty = not values and not rules
    return ParamwiseOptions(**values, rules=rules, empty=empty)


def _parse_rules(rules_cfg: Any) -> tuple[Rule, ...]:
    if not isinstance(rules_cfg, dict):
        raise RecipeError(
            "paramwise.rules",
            f"expected a table of glob = {{ lr_mult, decay_mult, freeze }}, got {rules_cfg!r}",
        )
    rules = []
    for glob, spec in rules_cfg.items():
        if not isinstance(spec, dict):
            raise RecipeError(rule_key(glob), f"expected a table like {{ lr_mult = 0.1 }}, got {spec!r}")
        for field, value in spec.items():
            if field not in RULE_KEYS:
                raise RecipeError(
                    rule_key(glob, field),
                    f"unknown rule option{did_you_mean(field, RULE_KEYS)} (allowed: {', '.join(RULE_KEYS)})",
                )
            if field == "freeze":
                if not isinstance(value, bool):
                    raise RecipeError(rule_key(glob, field), f"must be true or false, got {value!r}")
            elif not is_finite_number(value) or value < 0:
                raise RecipeError(rule_key(glob, field), f"must be a finite number >= 0, got {value!r}")
        rules.append(
            Rule(
                glob=glob,
                lr_mult=float(spec.get("lr_mult", 1.0)),
                decay_mult=float(spec.get("decay_mult", 1.0)),
                freeze=bool(spec.get("freeze", False)),
                sets_decay="decay_mult" in spec,
            )
        )
    return tuple(rules)


def validate_paramwise_cfg(paramwise_cfg: dict[str, Any] | None, optimizer_cfg: dict[str, Any]) -> None:
    """Check ``[paramwise]`` without a model (the built-in constructors' options; RecipeError on problems)."""
    parse_paramwise(paramwise_cfg, optimizer_cfg)
