"""The trackers a recipe may log to (Accelerate's), checked before anything is built."""

from __future__ import annotations

from typing import Any

from trainer.errors import RecipeError

TRACKERS = ("tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml", "dvclive", "swanlab", "trackio")
"""Accelerate's trackers: tensorboard, wandb, mlflow, aim, comet_ml, clearml, dvclive, swanlab, trackio."""
PACKAGES = {"tensorboard": "tensorboard", "comet_ml": "comet-ml"}
"""The pip name of each tracker's package, where it is not the tracker's own name."""


def check_trackers(train_cfg: dict[str, Any]) -> None:
    """Each tracker in `train.log_with` is installed and each `[train.trackers.<name>]` table names one of
    them; a RecipeError otherwise (before anything is built: Accelerate alone would warn and train on)."""
    from accelerate import utils

    log_with = train_cfg.get("log_with", [])
    for i, name in enumerate(log_with):
        available = getattr(utils, f"is_{name}_available", None)
        if available is not None and not available():
            package = PACKAGES.get(name, name)
            raise RecipeError(
                f"train.log_with[{i}]",
                f"{name} is not installed: pip install {package}, or leave it out of train.log_with",
            )
    for name, args in (train_cfg.get("trackers") or {}).items():
        if name != "project" and args is not None and name not in log_with:
            raise RecipeError(
                f"train.trackers.{name}",
                f"init arguments for {name}, which train.log_with does not name ({log_with or 'none'})",
            )
