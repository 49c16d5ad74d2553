"""One-line, user-facing errors for bad recipes and bad data configuration."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

EXIT_BAD_INPUT = 2
EXIT_PREEMPTED = 75  # sysexits' EX_TEMPFAIL: stopped by a signal after a checkpoint; rerun with --resume auto


class RecipeError(Exception):
    """A problem with the user's recipe: printed as one line, exits with code 2.

    `key` is the dotted key path (``optimizer.lr``, ``schedule[1].milestones``); `file` is the recipe
    file that set it (filled in by the loader when the raiser does not know it).
    """

    def __init__(self, key: str, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.file = file

    def __str__(self) -> str:
        file = self.file or "<recipe>"
        key = self.key or "<root>"
        return f"recipe error: {file}: {key}: {self.message}"


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``"; did you mean 'x'?"`` for close matches of `name`, or ``""``."""
    choices = list(choices)
    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in choices}
        matches = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=n, cutoff=0.6)]
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


@contextmanager
def exit_on_recipe_error() -> Iterator[None]:
    """Turn a RecipeError into its single line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except RecipeError as err:
        if int(os.environ.get("RANK", "0")) == 0:  # every process fails alike; one of them says so
            print(str(err), file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
