"""A renaming rule: a regex on timm's parameter name and the MMPretrain name it becomes."""

from __future__ import annotations

import re
from collections.abc import Callable

Rename = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def rules(*pairs: tuple[str, str | Callable[[re.Match[str]], str]]) -> list[Rename]:
    """Compile (pattern, replacement) pairs; a pattern must match a whole timm name, `HEAD` in the
    replacement stands for where the head keeps its Linear (trainer.port.names.HEADS)."""
    return [(re.compile(p), r) for p, r in pairs]
