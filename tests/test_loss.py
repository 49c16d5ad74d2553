"""trainer/loss.py: the loss timm's train.py would choose, and Mixup/CutMix drawn from (seed, step)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from timm.loss import BinaryCrossEntropy, SoftTargetCrossEntropy

from trainer.run.checkpoint import TrainerState
from trainer.run.loss import build_loss, build_mixup, mix_batch

TRAIN = {"loss": "cross_entropy", "label_smoothing": 0.1, "bce_sum": False}
MIXUP = {"enabled": True, "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5,
         "mode": "batch", "correct_lam": True}  # fmt: skip


def test_cross_entropy_with_label_smoothing_without_mixing():
    loss = build_loss(TRAIN, mixing=False)
    assert isinstance(loss, functools.partial) and loss.keywords == {"label_smoothing": 0.1}
    logits, labels = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    assert torch.equal(loss(logits, labels), F.cross_entropy(logits, labels, label_smoothing=0.1))


def test_soft_target_cross_entropy_under_mixing():
    assert isinstance(build_loss(TRAIN, mixing=True), SoftTargetCrossEntropy)


@pytest.mark.parametrize("mixing", [False, True])
def test_bce_takes_timms_options_and_smooths_only_hard_targets(mixing):
    cfg = {**TRAIN, "loss": "bce", "bce_target_thresh": 0.2, "bce_sum": True, "bce_pos_weight": 2.0}
    loss = build_loss(cfg, mixing=mixing)
    assert isinstance(loss, BinaryCrossEntropy)
    assert (loss.smoothing, loss.target_threshold, loss.sum_classes) == (0.0 if mixing else 0.1, 0.2, True)
    assert float(loss.pos_weight) == 2.0


def test_no_mixup_without_the_table_or_when_disabled():
    assert build_mixup({}, 10, 0.1) is None
    assert build_mixup({"mixup": {**MIXUP, "enabled": False}}, 10, 0.1) is None


def test_mixed_batches_are_soft_smoothed_and_a_function_of_seed_step_and_micro_batch():
    mixup = build_mixup({"mixup": MIXUP}, 10, 0.1)
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 3, 16, 16, generator=generator), torch.arange(8)

    def mixed(seed: int, step: int, batch: int):
        return mix_batch(mixup, images.clone(), labels, seed, TrainerState(step=step, batches_done=batch))

    x, y = mixed(0, 5, 3)
    assert not torch.equal(x, images) and y.shape == (8, 10)
    torch.testing.assert_close(y.sum(-1), torch.ones(8))
    assert y.min() >= 0.1 / 10 - 1e-6  # label smoothing is folded into the targets
    again_x, again_y = mixed(0, 5, 3)
    assert torch.equal(x, again_x) and torch.equal(y, again_y)
    assert not torch.equal(mixed(0, 6, 3)[0], x) and not torch.equal(mixed(1, 5, 3)[0], x)
    assert not torch.equal(mixed(0, 5, 4)[0], x)  # another micro-batch of the same accumulation window


def test_mixed_targets_reach_the_loss():
    mixup = build_mixup({"mixup": MIXUP}, 10, 0.0)
    images, labels = torch.rand(8, 3, 16, 16), torch.arange(8)
    _, targets = mix_batch(mixup, images, labels, 0, TrainerState(step=1))
    logits = torch.randn(8, 10)
    loss = build_loss({**TRAIN, "label_smoothing": 0.0}, mixing=True)(logits, targets)
    expected = (-targets * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(loss, F.cross_entropy(logits, labels))
