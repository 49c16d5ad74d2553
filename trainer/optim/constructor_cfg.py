"""`[optimizer.constructor]` read from the optimizer section: the constructor's name and its arguments."""

from __future__ import annotations

from typing import Any

from trainer.errors import RecipeError

DEFAULT_CONSTRUCTOR = "Default"


def constructor_cfg(optimizer_cfg: dict[str, Any]) -> dict[str, Any]:
    """``[optimizer.constructor]`` as a dict with a ``type`` (a bare string is taken as the type)."""
    cfg = optimizer_cfg.get("constructor")
    if cfg is None:
        return {"type": DEFAULT_CONSTRUCTOR}
    if isinstance(cfg, str):
        return {"type": cfg}
    if not isinstance(cfg, dict):
        raise RecipeError("optimizer.constructor", f"expected a table with a 'type', got {cfg!r}")
    return {"type": DEFAULT_CONSTRUCTOR, **cfg}


def constructor_args(optimizer_cfg: dict[str, Any]) -> dict[str, Any]:
    """The constructor's own arguments (``[optimizer.constructor]`` without ``type``)."""
    return {k: v for k, v in constructor_cfg(optimizer_cfg).items() if k != "type"}
