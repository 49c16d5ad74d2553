"""Train a timm model as a TOML recipe says: `python scripts/launch.py scripts/train.py RECIPE`."""

from __future__ import annotations

import sys

from trainer.errors import exit_on_recipe_error
from trainer.recipe.cli import recipe_parser
from trainer.run.signals import catch_early_stop_signals


def main(argv: list[str] | None = None) -> int:
    restore_signals = catch_early_stop_signals()  # a stop signal during the set-up waits for the loop
    try:
        parser = recipe_parser(__doc__)
        parser.add_argument(
            "--amp", action="store_true", help="mixed precision: bf16 where supported, else fp16"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="validate and build everything, train nothing"
        )
        parser.add_argument("--resume", metavar="auto|PATH", help="resume from the latest checkpoint or PATH")
        args = parser.parse_args(argv)
        with exit_on_recipe_error():
            from trainer.recipe.load import load_recipe

            recipe = load_recipe(args.recipe, args.overrides)
            with recipe.blame():
                if args.dry_run:
                    from trainer.run.summary import dry_run

                    print(dry_run(recipe, amp=args.amp))
                    return 0
                from trainer.run.loop import train

                return train(recipe, amp=args.amp, resume=args.resume)
    finally:
        restore_signals()


if __name__ == "__main__":
    sys.exit(main())
