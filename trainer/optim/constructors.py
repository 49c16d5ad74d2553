"""Optimizer constructors by name: callables ``(model, optimizer_cfg, paramwise_cfg) -> Optimizer``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from trainer.errors import RecipeError
from trainer.optim.constructor_cfg import constructor_cfg
from trainer.registry import Registry


class Constructor(Protocol):
    """Builds the optimizer (param groups included) for an unwrapped model.

    It may carry ``validate_args(args: dict) -> None``: checks its ``[optimizer.constructor]`` arguments
    without a model (raise RecipeError); without it any argument is accepted.
    """

    def __call__(
        self, model: torch.nn.Module, optimizer_cfg: dict[str, Any], paramwise_cfg: dict[str, Any]
    ) -> torch.optim.Optimizer: ...


CONSTRUCTORS: Registry[Constructor] = Registry("optimizer constructor")


def register_constructor(
    fn: Constructor | None = None,
    *,
    name: str | None = None,
    validate_args: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Register a constructor (usable as ``@register_constructor`` or with arguments)."""

    def add(item: Constructor) -> Constructor:
        if validate_args is not None:
            item.validate_args = validate_args  # type: ignore[attr-defined]
        return CONSTRUCTORS.register(item, name=name)

    return add if fn is None else add(fn)


def get_constructor(optimizer_cfg: dict[str, Any]) -> Constructor:
    """The constructor named by ``optimizer.constructor.type`` (default: "Default")."""
    name = constructor_cfg(optimizer_cfg)["type"]
    if not isinstance(name, str) or not name:
        raise RecipeError("optimizer.constructor.type", f"expected a constructor name, got {name!r}")
    return CONSTRUCTORS.get(name, key="optimizer.constructor.type")


def _register_builtins(registry: Registry) -> None:
    from trainer.optim.layer_decay import layer_decay_constructor
    from trainer.optim.paramwise import default_constructor

    for name in ("Default", "DefaultOptimWrapperConstructor"):
        _add(registry, name, default_constructor)
    for name in ("LayerDecay", "LearningRateDecayOptimWrapperConstructor"):
        _add(registry, name, layer_decay_constructor)


def _add(registry: Registry, name: str, fn: Constructor) -> None:
    try:
        registry.register(fn, name=name)
    except KeyError:  # the user registered this name first: theirs wins
        pass


CONSTRUCTORS.add_lazy(_register_builtins)
