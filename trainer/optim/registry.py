"""Optimizer classes by name: every torch.optim class, timm.optim's classes (lazily), and the user's own."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

from trainer.errors import RecipeError
from trainer.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
register_optimizer = OPTIMIZERS.register
"""Decorator: ``@register_optimizer`` or ``@register_optimizer(name="Mine")`` on an Optimizer subclass."""

# MMEngine registers torch's Adafactor under this name as well (its "Adafactor" is transformers').
_TORCH_ALIASES = {"Adafactor": "TorchAdafactor"}
# MMPretrain spells timm's Lamb / Lars this way.
_TIMM_ALIASES = {"Lamb": "LAMB", "Lars": "LARS"}


def _add(registry: Registry, name: str, cls: Any) -> bool:
    """Register unless `name` is taken by another object (the user's registration wins)."""
    try:
        registry.register(cls, name=name)
    except KeyError:
        return False
    return True


def _optimizer_classes(module: Any) -> dict[str, type]:
    """Optimizer subclasses in `module` whose first argument receives the parameters (not Lookahead's)."""
    found = {}
    for name in dir(module):
        obj = getattr(module, name)
        if (
            inspect.isclass(obj)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
        ):
            if _first_arg(obj) == "params":
                found[name] = obj
    return found


def _register_torch(registry: Registry) -> None:
    for name, cls in _optimizer_classes(torch.optim).items():
        _add(registry, name, cls)
        if name in _TORCH_ALIASES:
            _add(registry, _TORCH_ALIASES[name], cls)


def _register_timm(registry: Registry) -> None:
    """timm.optim's own classes; where torch already owns the name (Adafactor, Muon) timm's gets "Timm"."""
    import timm.optim

    classes = _optimizer_classes(timm.optim)
    try:
        from timm.optim.kron import Kron

        classes["Kron"] = Kron
    except ImportError:  # pragma: no cover - older timm
        pass
    for name, cls in classes.items():
        if not _add(registry, name, cls):
            _add(registry, f"Timm{name}", cls)
        if name in _TIMM_ALIASES:
            _add(registry, _TIMM_ALIASES[name], cls)


OPTIMIZERS.add_lazy(_register_torch)
OPTIMIZERS.add_lazy(_register_timm)


@dataclass(frozen=True)
class OptimizerSignature:
    """What an optimizer's constructor accepts: argument names, defaults, required ones, **kwargs."""

    params_arg: str
    args: tuple[str, ...]
    defaults: dict[str, Any]
    required: tuple[str, ...]
    takes_any: bool


def _first_arg(cls: Callable) -> str | None:
    try:
        return next(iter(inspect.signature(cls).parameters), None)
    except (TypeError, ValueError):
        return None


@cache
def optimizer_signature(cls: Callable) -> OptimizerSignature:
    """Inspect `cls(params, ...)`; the first parameter receives the param groups (as in MMEngine)."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return OptimizerSignature("params", (), {}, (), True)
    if not params:
        return OptimizerSignature("params", (), {}, (), True)
    first, rest = params[0], params[1:]
    named = [p for p in rest if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return OptimizerSignature(
        params_arg=first.name,
        args=tuple(p.name for p in named),
        defaults={p.name: p.default for p in named if p.default is not p.empty},
        required=tuple(p.name for p in named if p.default is p.empty),
        takes_any=any(p.kind is p.VAR_KEYWORD for p in rest),
    )


def optimizer_class(optimizer_cfg: dict[str, Any]) -> Callable[..., torch.optim.Optimizer]:
    """The class named by ``optimizer.type`` (a registered name or "pkg.mod:Class")."""
    name = optimizer_cfg.get("type")
    if not isinstance(name, str) or not name:
        raise RecipeError("optimizer.type", 'missing: name the optimizer class, e.g. type = "AdamW"')
    cls = OPTIMIZERS.get(name, key="optimizer.type")
    if not callable(cls):
        raise RecipeError("optimizer.type", f"{name!r} is not a class or callable")
    return cls


def optimizer_kwargs(optimizer_cfg: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the optimizer class: every key but ``type``/``constructor``; lists -> tuples."""
    return {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in optimizer_cfg.items()
        if k not in ("type", "constructor")
    }


def instantiate_optimizer(
    optimizer_cfg: dict[str, Any], param_groups: list[dict[str, Any]]
) -> torch.optim.Optimizer:
    """``cls(param_groups, **kwargs)``; an optimizer that rejects its arguments becomes a RecipeError."""
    cls = optimizer_class(optimizer_cfg)
    kwargs = optimizer_kwargs(optimizer_cfg)
    if _fused_by_default(cls, kwargs, param_groups):
        try:
            return cls(param_groups, **kwargs, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass  # this class/device/dtype has no fused kernel: the default implementation below
    try:
        return cls(param_groups, **kwargs)
    except (TypeError, ValueError) as err:
        raise RecipeError("optimizer", f"{optimizer_cfg['type']} rejected its arguments: {err}") from None


def _fused_by_default(cls: type, kwargs: dict[str, Any], param_groups: list[dict[str, Any]]) -> bool:
    """torch's fused kernels (one kernel per param group, not a Python loop over parameters) unless the
    recipe chose `fused` or `foreach`: on CPU the default loop costs 8-11% of a small model's step."""
    if "fused" in kwargs or "foreach" in kwargs or kwargs.get("differentiable"):
        return False
    if not cls.__module__.startswith("torch.optim") or "fused" not in inspect.signature(cls).parameters:
        return False
    devices = {p.device.type for group in param_groups for p in group["params"]}
    return bool(devices) and devices <= {"cpu", "cuda"}
