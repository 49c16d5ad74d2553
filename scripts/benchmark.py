"""Benchmark the trainer: (a) our loop vs (b) a plain Accelerate loop vs (c) plain PyTorch, on the same
model, batch, precision and synthetic data; the setup costs; with --overhead each loop's own per-batch
cost; with --data the quickstart data path's wait fraction. See docs/benchmarks.md.

    python scripts/benchmark.py [--models NAME ...] [--image-size N] [--batch-size N]
        [--precisions no bf16] [--accumulate 1 4] [--threads 1] [--device cpu|cuda] [--fused]
        [--overhead] [--data] [--json FILE]

Each (model, precision, accumulate) case runs in a fresh process with OMP_NUM_THREADS set; inside it the
three loops take turns (interleaved rounds), and samples/s is the median over windows after warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from trainer.bench import DEFAULT_MODELS, OVERHEAD_CASE, OVERHEAD_MODEL, SECTIONS, BenchConfig, run_benchmark
from trainer.cli import ArgumentParser

DEFAULT_SIZES = dict(DEFAULT_MODELS) | {OVERHEAD_MODEL: OVERHEAD_CASE["image_size"]}


def parse_args(argv: list[str] | None) -> tuple[BenchConfig, str | None]:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        nargs="+",
        default=[name for name, _ in DEFAULT_MODELS],
        help="timm model names (GPU: vit_base_patch16_224 resnet50)",
    )
    parser.add_argument("--image-size", type=int, help="input size for every model (default: 64, else 224)")
    parser.add_argument("--batch-size", type=int, default=16, help="micro-batch size")
    parser.add_argument("--precisions", nargs="+", choices=["no", "bf16"], default=["no", "bf16"])
    parser.add_argument("--accumulate", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS and torch threads per case")
    parser.add_argument("--fused", action="store_true", help="fused=True optimizer in all three loops")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three loops")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per loop per round")
    parser.add_argument("--warmup", type=int, default=1, help="windows dropped at the start of each round")
    parser.add_argument("--window-batches", type=int, default=8, help="micro-batches per window")
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=["throughput", "setup"], help="what to measure"
    )
    parser.add_argument("--overhead", action="store_true", help="add the loop-overhead section")
    parser.add_argument("--data", action="store_true", help="add the data-path section")
    parser.add_argument(
        "--data-workers", nargs="+", type=int, help="num_workers settings of the data section"
    )
    parser.add_argument("--data-epochs", type=int, default=2, help="quickstart epochs per data setting")
    parser.add_argument("--profile", metavar="DIR", help="cProfile each loop's last round into DIR")
    parser.add_argument("--json", metavar="FILE", help="write every result as JSON")
    args = parser.parse_args(argv)
    wanted = {*args.sections, *(["overhead"] if args.overhead else []), *(["data"] if args.data else [])}
    config = BenchConfig(
        models=[(name, args.image_size or DEFAULT_SIZES.get(name, 224)) for name in args.models],
        batch_size=args.batch_size,
        precisions=args.precisions,
        accumulates=args.accumulate,
        device=args.device,
        threads=args.threads,
        fused=args.fused,
        rounds=args.rounds,
        timed_windows=args.windows,
        warmup_windows=args.warmup,
        window_batches=args.window_batches,
        sections=[name for name in SECTIONS if name in wanted],
        data_epochs=args.data_epochs,
        profile_dir=args.profile,
    )
    if args.data_workers is not None:
        config = replace(config, loader_settings=[{"num_workers": n} for n in args.data_workers])
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    start = time.perf_counter()
    results = run_benchmark(config, print_fn=lambda line: print(line, flush=True))
    results["wall_s"] = round(time.perf_counter() - start, 1)
    print(f"total {results['wall_s']:.0f} s")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
