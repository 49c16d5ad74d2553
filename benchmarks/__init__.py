"""Benchmark the trainer against what a user would otherwise run (issue 7): `python scripts/benchmark.py`,
see docs/benchmarks.md. A folder of the checkout, not part of the installed `trainer` package: it needs
recipes/, data/ and scripts/.

- `loops`: the three loops on one case, (a) `trainer.loop.train`, (b) plain Accelerate, (c) plain PyTorch.
- `setup`: optimizer, schedule, import and start-to-first-step costs.
- `data`: the data path's wait fraction per DataLoader setting.
- `run`: `BenchConfig` and the sections, each measurement in a fresh process (`process`); `report` prints.

Heavy libraries are imported inside functions: a child measuring startup must import them cold.
"""
