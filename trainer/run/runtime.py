"""Facts about where the run happens: process count and the precision actually used."""

from __future__ import annotations

import os
from typing import Any

import torch


def world_size() -> int:
    """Number of training processes as the launcher (accelerate launch / torchrun) declares it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_precision(train_cfg: dict[str, Any], amp: bool = False) -> str:
    """`accelerate launch --mixed_precision` if given, else with `--amp` bf16 where the hardware supports it
    (else fp16), else the recipe's `train.precision`."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched != "no":
        return launched
    if not amp:
        return train_cfg["precision"]
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16"


def effective_batch_size(recipe_cfg: dict[str, Any], num_processes: int | None = None) -> int:
    """Samples per optimizer step: batch_size × accumulate × processes."""
    n = world_size() if num_processes is None else num_processes
    return recipe_cfg["data"]["batch_size"] * recipe_cfg["train"]["accumulate"] * n
