"""The optimizer class's own hyper-parameters: the ones every param group holds, and the base lr / decay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.optim.registry import optimizer_class, optimizer_signature
from trainer.values import is_number


@dataclass(frozen=True)
class BaseHyperparams:
    """The optimizer's lr and weight_decay: the recipe's value, else the class default (None: none)."""

    lr: float | None
    weight_decay: float | None


def optimizer_hyperparams(optimizer_cfg: dict[str, Any]) -> tuple[str, ...] | None:
    """The hyper-parameters every param group holds (the class's arguments); None where it takes **kwargs."""
    sig = optimizer_signature(optimizer_class(optimizer_cfg))
    return None if sig.takes_any else sig.args


def base_hyperparams(optimizer_cfg: dict[str, Any]) -> BaseHyperparams:
    """Base lr / weight_decay that multipliers scale: the recipe's value, else the optimizer's default."""
    sig = optimizer_signature(optimizer_class(optimizer_cfg))

    def value(arg: str) -> float | None:
        if arg in optimizer_cfg:
            return optimizer_cfg[arg]
        default = sig.defaults.get(arg)
        return default if is_number(default) else None

    return BaseHyperparams(lr=value("lr"), weight_decay=value("weight_decay"))
