"""Time the schedule: build a whole 1,000,000-step curve (target about 1 s) and one apply() per step.

    python scripts/bench_schedule.py [--steps 1000000] [--groups 28] [--repeat 3]

Prints one JSON line: build seconds (best of --repeat), microseconds per apply(), and the setup.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from trainer.schedule import build_schedule

# A ViT-style recipe: linear warmup over 5 epochs in steps, cosine over the rest in steps (both
# converted from epochs), a per-epoch step decay of momentum on top: three chained families.
ENTRIES = [
    {"type": "LinearLR", "start_factor": 1e-3, "by_epoch": True, "end": 5, "convert_to_iter_based": True},
    {
        "type": "CosineAnnealingLR",
        "by_epoch": True,
        "begin": 5,
        "eta_min_ratio": 1e-2,
        "convert_to_iter_based": True,
    },
    {"type": "CosineAnnealingMomentum", "eta_min": 0.95, "by_epoch": False},
]
EPOCHS = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=1_000_000, help="total optimizer steps (multiple of 100)"
    )
    parser.add_argument("--groups", type=int, default=28, help="param groups (layer decay: one lr each)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    groups = [
        {
            "params": [torch.nn.Parameter(torch.zeros(1))],
            "lr": 1e-3 * 0.65 ** (i // 2),
            "betas": (0.9, 0.999),
            "weight_decay": 0.05 * (i % 2),
        }
        for i in range(args.groups)
    ]
    optimizer = torch.optim.AdamW(groups)
    spe = args.steps // EPOCHS
    builds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        schedule = build_schedule(
            ENTRIES, param_groups=optimizer.param_groups, steps_per_epoch=spe, train_cfg={"epochs": EPOCHS}
        )
        builds.append(time.perf_counter() - start)
    calls = 20_000
    stride = max(1, schedule.total_steps // calls)
    start = time.perf_counter()
    for step in range(0, stride * calls, stride):
        schedule.apply(optimizer, step)
    apply_us = (time.perf_counter() - start) / calls * 1e6
    print(
        json.dumps(
            {
                "benchmark": "schedule",
                "total_steps": schedule.total_steps,
                "param_groups": args.groups,
                "schedulers": len(ENTRIES),
                "build_s": round(min(builds), 4),
                "build_s_all": [round(b, 4) for b in builds],
                "apply_us": round(apply_us, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
