"""A family's renaming table: regex rules from timm's parameter names to MMPretrain's, and the parameters the
two models do not share one to one (declared, each with its reason; tests/test_port_names.py checks them
on MMPretrain's own model)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

Rename = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def rules(*pairs: tuple[str, str | Callable[[re.Match[str]], str]]) -> list[Rename]:
    """Compile (pattern, replacement) pairs; a pattern must match a whole timm name, `HEAD` (`HEAD_DIST`,
    `HEAD_MID`) in the replacement stands for where the head keeps its Linear (trainer.port.names.HEADS)."""
    return [(re.compile(p), r) for p, r in pairs]


class Kind(Enum):
    """How a parameter differs between the two models."""

    RESHAPED = "reshaped"
    """The same tensor in another shape (a Linear as a 1x1 or full-size Conv2d): the timm name's pattern."""
    PART = "part"
    """A slice of one MMPretrain parameter that several timm parameters share: the timm name's pattern."""
    TIMM_ONLY = "timm_only"
    """A timm parameter MMPretrain's model lacks, renamed as it would be named there: the timm name's
    pattern."""
    MMPRETRAIN_ONLY = "mmpretrain_only"
    """An MMPretrain parameter no timm parameter renames to: the MMPretrain name's pattern."""


@dataclass(frozen=True)
class Difference:
    """Parameters matching `pattern` (a whole-name regex) differ between the models as `kind` says."""

    kind: Kind
    pattern: str
    reason: str

    def matches(self, name: str) -> bool:
        """Whether `name` is one of these parameters."""
        return re.fullmatch(self.pattern, name) is not None


@dataclass(frozen=True)
class Table:
    """The rules of one family (for one timm model) and its declared differences."""

    rules: list[Rename]
    differences: tuple[Difference, ...] = ()

    def declared(self, kind: Kind) -> tuple[Difference, ...]:
        """The differences of one kind."""
        return tuple(d for d in self.differences if d.kind is kind)
