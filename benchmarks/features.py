"""What recipe features cost per step: our loop with Mixup/CutMix, with EMA and with both, against the same
recipe without them, in one process (interleaved rounds, medians of the timed windows)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmarks.loops import Case, run_trainer

FEATURES: dict[str, dict[str, Any]] = {
    "plain": {},
    "mixup_cutmix": {"mixup": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}},
    "ema": {"ema": {"momentum": 1e-4}},
    "mixup_cutmix_ema": {"mixup": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}, "ema": {"momentum": 1e-4}},
}
"""DeiT's mixing (MMPretrain's Mixup(alpha=0.8), CutMix(alpha=1.0)) and ConvNeXt's EMAHook momentum."""


def measure_features(case: Case, workdir: Path) -> dict[str, Any]:
    """Median samples/s (wall and CPU clocks) of each feature set, and its ratio to "plain"."""
    import torch

    torch.set_num_threads(case.threads)
    wall: dict[str, list[float]] = {name: [] for name in FEATURES}
    cpu: dict[str, list[float]] = {name: [] for name in FEATURES}
    names = list(FEATURES)
    for r in range(case.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            result = run_trainer(case, workdir / f"{name}_{r}", FEATURES[name])
            wall[name].extend(result.wall)
            cpu[name].extend(result.cpu)
    out: dict[str, Any] = {"model": case.model, "image_size": case.image_size, "batch_size": case.batch_size}
    for clock, windows in (("wall", wall), ("cpu", cpu)):
        medians = {name: statistics.median(w) for name, w in windows.items()}
        out[clock] = {
            "samples_per_sec": {name: round(m, 2) for name, m in medians.items()},
            "ratio_vs_plain": {name: round(m / medians["plain"], 4) for name, m in medians.items()},
        }
    return out
