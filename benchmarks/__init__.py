"""Benchmark the trainer against what a user would otherwise run (issue 7); see docs/benchmarks.md.

- `loops`: the three loops on one case, (a) `trainer.loop.train`, (b) plain Accelerate, (c) plain PyTorch.
- `setup`: optimizer, schedule, import and start-to-first-step costs.
- `data`: the data path's wait fraction per DataLoader setting.
- `run`: the sections `scripts/benchmark.py` runs, each measurement in a fresh process (`process`).
Heavy libraries are imported inside functions: a child measuring startup must import them cold.
"""

from trainer.bench.data import DEFAULT_LOADER_SETTINGS, recommend_loader
from trainer.bench.loops import TARGETS, Case, summarize_case
from trainer.bench.run import DEFAULT_MODELS, OVERHEAD_CASE, SECTIONS, BenchConfig, run_benchmark
from trainer.bench.tiny_model import OVERHEAD_MODEL

__all__ = [
    "DEFAULT_LOADER_SETTINGS",
    "DEFAULT_MODELS",
    "OVERHEAD_CASE",
    "OVERHEAD_MODEL",
    "SECTIONS",
    "TARGETS",
    "BenchConfig",
    "Case",
    "recommend_loader",
    "run_benchmark",
    "summarize_case",
]
