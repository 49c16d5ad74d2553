"""Benchmark the trainer: (a) our loop vs (b) a plain Accelerate loop vs (c) plain PyTorch, on the same
model, batch, precision and synthetic data; the setup costs; with --overhead each loop's own per-batch
cost; with --data the quickstart data path's wait fraction. See docs/benchmarks.md; the harness is the
checkout's benchmarks/ folder.

    python scripts/benchmark.py [--models NAME ...] [--image-size N] [--batch-size N]
        [--precisions no|bf16 ...] [--accumulate N ...] [--threads N] [--device cpu|cuda] [--fused]
        [--overhead] [--data] [--json FILE]

Each (model, precision, accumulate) case runs in a fresh process with OMP_NUM_THREADS set; inside it the
three loops take turns (interleaved rounds), and samples/s is the median over windows after warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is in the checkout, not installed

from benchmarks.loops import OVERHEAD_MODEL  # noqa: E402
from benchmarks.run import OTHER_IMAGE_SIZE, SECTIONS, BenchConfig, default_image_size, run_benchmark  # noqa: E402
from trainer.recipe.cli import ArgumentParser  # noqa: E402


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written; each option's default (BenchConfig's) after its help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return f"{action.help} (default: %(default)s)"


def parse_args(argv: list[str] | None) -> tuple[BenchConfig, str | None]:
    default = BenchConfig()  # every default below is BenchConfig's
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add = parser.add_argument
    models = [name for name, _ in default.models]
    add("--models", nargs="+", default=models, help="timm model names (GPU: vit_base_patch16_224 resnet50)")
    sizes = ", ".join(f"{name} {default_image_size(name)}" for name in [*models, OVERHEAD_MODEL])
    add(
        "--image-size",
        type=int,
        help=f"input size for every model (default: {sizes}, others {OTHER_IMAGE_SIZE})",
    )
    add("--batch-size", type=int, default=default.batch_size, help="micro-batch size")
    add("--precisions", nargs="+", choices=["no", "bf16"], default=default.precisions, help="train.precision")
    add("--accumulate", nargs="+", type=int, default=default.accumulates, help="train.accumulate")
    add("--device", choices=["cpu", "cuda"], default=default.device, help="where the loops run")
    add("--threads", type=int, default=default.threads, help="OMP_NUM_THREADS and torch threads per case")
    add("--fused", action="store_true", help="fused=True optimizer in all three loops")
    add("--rounds", type=int, default=default.rounds, help="interleaved rounds of the three loops")
    add("--windows", type=int, default=default.timed_windows, help="timed windows per loop per round")
    add(
        "--warmup",
        type=int,
        default=default.warmup_windows,
        help="windows dropped at the start of each round",
    )
    add("--window-batches", type=int, default=default.window_batches, help="micro-batches per window")
    add("--sections", nargs="+", choices=SECTIONS, default=default.sections, help="what to measure")
    add("--overhead", action="store_true", help="add the loop-overhead section")
    add("--data", action="store_true", help="add the data-path section")
    add(
        "--data-workers",
        nargs="+",
        type=int,
        help=f"num_workers settings of the data section (default: {default.loader_settings})",
    )
    add("--data-epochs", type=int, default=default.data_epochs, help="quickstart epochs per data setting")
    add("--data-tree-files", type=int, default=default.data_tree_files, help="files of the start-up tree")
    add("--data-images", type=int, default=default.data_images, help="JPEGs of the loader comparison")
    add("--profile", metavar="DIR", help="cProfile each loop's last round into DIR")
    add("--json", metavar="FILE", help="write every result as JSON")
    args = parser.parse_args(argv)
    wanted = {*args.sections, *(["overhead"] if args.overhead else []), *(["data"] if args.data else [])}
    loaders = (
        [{"num_workers": n} for n in args.data_workers] if args.data_workers else default.loader_settings
    )
    config = BenchConfig(
        models=[(name, args.image_size or default_image_size(name)) for name in args.models],
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
        loader_settings=loaders,
        data_epochs=args.data_epochs,
        data_tree_files=args.data_tree_files,
        data_images=args.data_images,
        profile_dir=args.profile,
    )
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
