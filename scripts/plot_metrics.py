"""Plot the training curves of one or several runs: loss, lr and eval top-1 (and EMA top-1) against the step.

scripts/plot_metrics.py runs/quickstart [runs/other ...] --out curves.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainer.errors import exit_on_recipe_error
from trainer.recipe.cli import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", metavar="RUN_DIR", nargs="+", help="run directories (each with metrics.jsonl)"
    )
    parser.add_argument(
        "--out", metavar="PNG", help="figure to write (default: RUN_DIR/curves.png for one run)"
    )
    parser.add_argument(
        "--names", metavar="NAME", nargs="+", help="legend names, one per run (default: folders)"
    )
    parser.add_argument("--title", help="figure title (default: the run names)")
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.runs):
        parser.error(f"--names: got {len(args.names)} names for {len(args.runs)} runs")
    if args.out is None and len(args.runs) > 1:
        parser.error("--out PNG is needed with several runs")
    with exit_on_recipe_error():
        from trainer.outputs.curves import load_curves, plot_curves, run_names

        names = args.names or run_names(args.runs)
        curves = [load_curves(run, name) for run, name in zip(args.runs, names, strict=True)]
        out = args.out or str(Path(args.runs[0]) / "curves.png")
        plot_curves(curves, out, title=args.title)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
