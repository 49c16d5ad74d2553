"""build_optimizer: the one entry point the loop and tools call."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainer.optim.config import validate_optimizer_cfg
from trainer.optim.constructors import get_constructor


def unwrap_model(model: nn.Module) -> nn.Module:
    """The timm model under DDP / DataParallel / torch.compile wrappers (names as its named_parameters())."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def build_optimizer(
    model: nn.Module, optimizer_cfg: dict[str, Any], paramwise_cfg: dict[str, Any] | None = None
) -> torch.optim.Optimizer:
    """Validate ``[optimizer]``; run the constructor it names (default "Default") on the unwrapped model."""
    validate_optimizer_cfg(optimizer_cfg)
    constructor = get_constructor(optimizer_cfg)
    return constructor(unwrap_model(model), optimizer_cfg, paramwise_cfg or {})
