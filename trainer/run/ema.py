"""Model EMA: timm's ModelEmaV3, updated once per optimizer step by MMEngine's EMAHook rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from timm.utils import ModelEmaV3

EMA_FILE = "model_ema.safetensors"


class ModelEma:
    """An averaged copy of the (unwrapped) model, one per process, never sharded.

    MMEngine's rules in optimizer steps: until `begin` the average is a copy of the model; the first update
    from `begin` on copies too, then every `interval`-th update lerps with weight 1 - decay (momentum), and
    between averages buffers are copied when they are not averaged. With `warmup`, timm's decay warmup.
    The tensor lists are gathered once, so an update is two foreach kernels and no module traversal.
    """

    def __init__(self, model: torch.nn.Module, cfg: dict[str, Any], begin_step: int) -> None:
        decay = cfg["decay"] if "decay" in cfg else 1.0 - cfg["momentum"]
        update_buffers = cfg.get("update_buffers", "decay" in cfg)
        self.ema = ModelEmaV3(
            model,
            decay=decay,
            use_warmup=cfg["warmup"],
            warmup_gamma=cfg["warmup_gamma"],
            warmup_power=cfg["warmup_power"],
            exclude_buffers=not update_buffers,
            foreach=True,
        )
        self.ema.requires_grad_(False)
        self.interval = cfg["interval"]
        self.first_step = max(begin_step, 1)
        param_ids = {id(p) for p in model.parameters()}
        ema_tensors = list(self.ema.module.state_dict().values())
        model_tensors = list(model.state_dict(keep_vars=True).values())
        self._averaged: tuple[list, list] = ([], [])
        self._copied: tuple[list, list] = ([], [])
        for ema_t, model_t in zip(ema_tensors, model_tensors, strict=True):
            average = id(model_t) in param_ids or (update_buffers and ema_t.is_floating_point())
            pair = self._averaged if average else self._copied
            pair[0].append(ema_t)
            pair[1].append(model_t.detach())
        self._all = (ema_tensors, [t.detach() for t in model_tensors])

    @property
    def module(self) -> torch.nn.Module:
        return self.ema.module

    @torch.no_grad()
    def update(self, step: int) -> None:
        """After optimizer step `step` (1-based) of the model."""
        calls = step - self.first_step  # MMEngine's ema.steps before this call
        if calls <= 0:
            self.copy()
            return
        if calls % self.interval == 0:
            decay = self.ema.get_decay(calls // self.interval + 1)
            self.ema._foreach_lerp_(*self._averaged, weight=1.0 - decay)  # timm's (bf16: stochastic rounding)
        if self._copied[0]:
            torch._foreach_copy_(*self._copied)

    @torch.no_grad()
    def copy(self) -> None:
        """Set the average to the model's weights and buffers."""
        torch._foreach_copy_(*self._all)

    def save(self, path: Path) -> None:
        save_model(self.ema.module, str(path))

    def load(self, path: Path) -> None:
        load_model(self.ema.module, str(path), device=str(next(self.ema.module.parameters()).device))
