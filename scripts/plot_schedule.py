"""Plot a recipe's learning-rate (and momentum) schedule, like MMPretrain's vis_scheduler; trains nothing.

scripts/plot_schedule.py recipes/vit_adamw.toml --dataset-size 50000 --out lr.png --json lr.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer.errors import exit_on_recipe_error
from trainer.recipe.cli import recipe_parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(__doc__.splitlines()[0])
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps-per-epoch", type=positive_int, metavar="N", help="optimizer steps per epoch")
    length.add_argument(
        "--dataset-size",
        type=positive_int,
        metavar="N",
        help="training samples: steps/epoch = ceil(N // (batch_size x processes) / accumulate)"
        " (data.drop_last = false: ceil instead of //)",
    )
    parser.add_argument(
        "--num-processes",
        type=positive_int,
        default=1,
        metavar="P",
        help="training processes, with --dataset-size (default 1)",
    )
    parser.add_argument("--out", metavar="PNG", help="figure to write (default: <recipe>_schedule.png)")
    parser.add_argument("--json", metavar="FILE", help="also write the curves as JSON")
    args = parser.parse_args(argv)
    if args.num_processes != 1 and args.dataset_size is None:
        parser.error("--num-processes only applies with --dataset-size")
    with exit_on_recipe_error():
        from trainer.recipe.load import load_recipe
        from trainer.run.build import build_static
        from trainer.schedule import steps_per_epoch
        from trainer.schedule.plot import plot, write_json

        recipe = load_recipe(args.recipe, args.overrides)
        spe = args.steps_per_epoch or steps_per_epoch(
            args.dataset_size,
            recipe.cfg["data"]["batch_size"],
            recipe.cfg["train"]["accumulate"],
            args.num_processes,
            drop_last=recipe.cfg["data"]["drop_last"],
        )
        with recipe.blame():
            schedule = build_static(recipe.cfg, spe).schedule
    out = args.out or (None if args.json else f"{recipe.name}_schedule.png")
    if out:
        plot(schedule, out, title=f"{Path(args.recipe).name}: parameter schedule")
        print(f"wrote {out}")
    if args.json:
        write_json(schedule, args.json)
        print(f"wrote {args.json}")
    print(
        f"{spe} steps/epoch, {schedule.total_steps} steps, {len(schedule.group_names)} param groups, "
        f"scheduled: {', '.join(schedule.params)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
