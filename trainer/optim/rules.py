"""fnmatch rules compiled once into one regex that returns the winning rule in MMEngine's order."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence


def precedence_order(globs: Iterable[str]) -> list[str]:
    """MMEngine's custom_keys order: longest pattern first, ties alphabetical."""
    return sorted(sorted(globs), key=len, reverse=True)


class RuleMatcher:
    """Finds the first glob (in precedence order) that matches a whole parameter name, in one regex call."""

    def __init__(self, globs: Sequence[str]) -> None:
        self.globs = precedence_order(globs)
        alternatives = "|".join(f"(?P<r{i}>{fnmatch.translate(g)})" for i, g in enumerate(self.globs))
        self._regex = re.compile(alternatives) if self.globs else None

    def match(self, name: str) -> str | None:
        """The winning glob for `name`, or None."""
        if self._regex is None:
            return None
        m = self._regex.match(name)
        return self.globs[int(m.lastgroup[1:])] if m else None

    @staticmethod
    def matches_any(glob: str, names: Iterable[str]) -> list[str]:
        """Names `glob` matches on its own, ignoring precedence (used only to explain unused rules)."""
        regex = re.compile(fnmatch.translate(glob))
        return [n for n in names if regex.match(n)]
