"""Show each parameter's group, lr and weight decay: `python scripts/inspect_recipe.py RECIPE [--json F]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trainer.errors import exit_on_recipe_error
from trainer.recipe.cli import recipe_parser


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(__doc__)
    parser.add_argument("--json", metavar="FILE", help="also write the description as JSON to FILE")
    args = parser.parse_args(argv)
    with exit_on_recipe_error():
        from trainer.optim import describe_params, format_description
        from trainer.recipe.load import load_recipe
        from trainer.run.build import build_static

        recipe = load_recipe(args.recipe, args.overrides)
        with recipe.blame():
            built = build_static(recipe.cfg)
    description = describe_params(built.model, built.optimizer)
    print(format_description(description))
    if args.json:
        Path(args.json).write_text(json.dumps(description, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
