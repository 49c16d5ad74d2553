"""Port an MMPretrain config to a recipe: `python scripts/port_mmpretrain.py CONFIG.py [-o recipe.toml]`.

What does not map is listed at the top of the recipe and printed as one warning per item; --strict makes
any such item an error (exit 2, nothing written).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from trainer.errors import EXIT_BAD_INPUT, exit_on_recipe_error
from trainer.recipe.cli import ArgumentParser


def positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="port_mmpretrain.py", description=__doc__.splitlines()[0])
    parser.add_argument("config", metavar="CONFIG", help="MMPretrain config file (classic _base_ format)")
    parser.add_argument("-o", "--output", metavar="RECIPE", help="recipe file to write (default: stdout)")
    parser.add_argument(
        "--model", metavar="TIMM_NAME", help="timm model to use instead of the backbone's match"
    )
    parser.add_argument("--data", metavar="PATH", help="dataset path or hub name instead of the config's")
    parser.add_argument(
        "--scale-lr-to",
        type=positive_int,
        metavar="N",
        help="scale the lr linearly from auto_scale_lr to batch N",
    )
    parser.add_argument("--strict", action="store_true", help="fail (exit 2) if anything does not map")
    args = parser.parse_args(argv)
    with exit_on_recipe_error():
        from trainer.port import PortOptions, port_config
        from trainer.port.writer import recipe_text

        ported = port_config(args.config, PortOptions(args.model, args.data, args.scale_lr_to))
    where = args.config
    if args.strict and ported.report.unmapped:
        for item in ported.report.unmapped:
            print(f"port error: {where}: {item} (--strict)", file=sys.stderr)
        return EXIT_BAD_INPUT
    for item in ported.report.unmapped:
        print(f"warning: {where}: {item}", file=sys.stderr)
    command = "python scripts/port_mmpretrain.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    chain = [os.path.normpath(p) for p in ported.source.chain]
    text = recipe_text(ported.recipe, ported.report, args.config, chain, command)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text)
    except OSError as err:
        print(f"port error: {args.output}: cannot write: {err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {args.output} ({len(ported.report.unmapped)} items not mapped)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
