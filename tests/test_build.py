"""trainer/build.py: what the dry run, inspect and plot tools build without reading data."""

from __future__ import annotations

import pytest

from trainer.errors import RecipeError
from trainer.run.build import build_static

BASE = {
    "model": {"name": "test_resnet", "num_classes": 4},
    "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
    "paramwise": {},
}


def test_step_counted_windows_past_epochs_steps_fit_when_the_data_is_unknown():
    """MMPretrain's PolyLR from iteration 5000 of a 300-epoch run: valid for any dataset of > 16 batches."""
    cfg = {
        **BASE,
        "train": {"epochs": 300},
        "schedule": [{"type": "PolyLR", "by_epoch": False, "begin": 5000}],
    }
    schedule = build_static(cfg).schedule
    assert schedule.steps_per_epoch == 17 and schedule.total_steps == 300 * 17
    with pytest.raises(RecipeError, match="not before the end of training"):
        build_static(cfg, steps_per_epoch=10)  # a known, too small dataset is still an error


def test_epoch_windows_are_checked_at_one_step_per_epoch():
    cfg = {
        **BASE,
        "train": {"epochs": 10},
        "schedule": [{"type": "CosineAnnealingLR", "begin": 2, "end": 12}],
    }
    with pytest.raises(RecipeError):
        build_static(cfg)
    ok = {**cfg, "schedule": [{"type": "CosineAnnealingLR", "begin": 2}]}
    assert build_static(ok).schedule.steps_per_epoch == 1
