"""Checks of the open [optimizer] section against its class: arguments fit the signature, values in range."""

from __future__ import annotations

import math
from typing import Any

from trainer.errors import RecipeError, did_you_mean
from trainer.optim.constructor_cfg import constructor_args
from trainer.optim.constructors import get_constructor
from trainer.optim.registry import OptimizerSignature, optimizer_class, optimizer_signature
from trainer.values import is_finite_number, is_number


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
