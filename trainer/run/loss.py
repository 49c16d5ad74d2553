"""The training loss and batch mixing: timm's Mixup/CutMix, SoftTargetCrossEntropy and BinaryCrossEntropy,
chosen as timm's train.py chooses them. Evaluation always uses plain cross-entropy on unmixed batches."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import BinaryCrossEntropy, SoftTargetCrossEntropy

from trainer.data.seeding import mix_seed
from trainer.run.checkpoint import TrainerState

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MIX_STREAM = 3


def build_mixup(cfg: dict[str, Any], num_classes: int, label_smoothing: float) -> Mixup | None:
    """timm's Mixup from `[mixup]` (None when absent or disabled); label smoothing goes into its targets."""
    mix = cfg.get("mixup")
    if not mix or not mix["enabled"]:
        return None
    return Mixup(
        mixup_alpha=mix["mixup_alpha"],
        cutmix_alpha=mix["cutmix_alpha"],
        cutmix_minmax=mix.get("cutmix_minmax"),
        prob=mix["prob"],
        switch_prob=mix["switch_prob"],
        mode=mix["mode"],
        correct_lam=mix["correct_lam"],
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )


def build_loss(train_cfg: dict[str, Any], mixing: bool) -> Loss:
    """Cross-entropy (soft-target under mixing) or timm's BinaryCrossEntropy, as `[train]` says."""
    if train_cfg["loss"] == "bce":
        return BinaryCrossEntropy(
            smoothing=0.0 if mixing else train_cfg["label_smoothing"],  # mixed targets carry it already
            target_threshold=train_cfg.get("bce_target_thresh"),
            sum_classes=train_cfg["bce_sum"],
            pos_weight=train_cfg.get("bce_pos_weight"),
        )
    if mixing:
        return SoftTargetCrossEntropy()
    return partial(F.cross_entropy, label_smoothing=train_cfg["label_smoothing"])


def mix_batch(
    mixup: Mixup, images: torch.Tensor, labels: torch.Tensor, seed: int, state: TrainerState
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix one micro-batch with numpy's RNG (all timm's Mixup draws from) seeded from (seed, step, micro-batch
    of the epoch): the same mix on any number of workers and after a resume."""
    np.random.seed(mix_seed(MIX_STREAM, seed, state.step, state.batches_done) & 0xFFFFFFFF)
    return mixup(images, labels)
