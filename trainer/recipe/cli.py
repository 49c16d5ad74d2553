"""Argument parsing shared by the scripts: `--set` overrides and one-line usage errors."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from trainer.errors import EXIT_BAD_INPUT


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a single-line error (exit code 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def recipe_parser(description: str) -> ArgumentParser:
    """A parser with the positional RECIPE and repeatable `--set key.path=value`."""
    parser = ArgumentParser(description=description)
    parser.add_argument("recipe", metavar="RECIPE", help="path to a TOML recipe")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="extend",
        nargs="+",
        default=[],
        help='override a recipe key; the value is TOML (--set optimizer.lr=3e-4 train.precision="bf16")',
    )
    return parser
