"""Evaluate a run's (or a recipe's) weights on the recipe's eval split: top-1, top-5 and loss as JSON.

scripts/evaluate.py runs/quickstart [--ema] [--json eval.json]
scripts/evaluate.py recipes/quickstart.toml --weights w.safetensors
python scripts/launch.py --num_processes 2 scripts/evaluate.py runs/quickstart   (each process a shard)
"""

from __future__ import annotations

import json
import os
import sys

from trainer.errors import exit_on_recipe_error
from trainer.recipe.cli import recipe_parser


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(__doc__.splitlines()[0])
    parser.usage = "%(prog)s (RUN_DIR | RECIPE) [--weights FILE] [--ema] [--set KEY=VALUE ...] [--json FILE]"
    target = next(action for action in parser._actions if action.dest == "recipe")  # recipe_parser's RECIPE
    target.metavar = "RUN_DIR | RECIPE"
    target.help = (
        "a run directory (its recipe.toml and model.safetensors), or a TOML recipe with --weights FILE or the"
        " initial weights it names"
    )
    parser.add_argument("--weights", metavar="FILE", help="safetensors weights (default: the run's)")
    parser.add_argument("--ema", action="store_true", help="evaluate the run's model_ema.safetensors")
    parser.add_argument("--amp", action="store_true", help="mixed precision, as scripts/train.py --amp")
    parser.add_argument("--json", metavar="FILE", help="also write the result to FILE")
    args = parser.parse_args(argv)
    with exit_on_recipe_error():
        from trainer.run.eval_run import evaluate_target, resolve_target

        target = resolve_target(args.recipe, args.overrides, weights=args.weights, ema=args.ema)
        result = evaluate_target(target, amp=args.amp)
    if int(os.environ.get("RANK", "0")) == 0:  # every process has the result; one prints it
        text = json.dumps(result, indent=1)
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
