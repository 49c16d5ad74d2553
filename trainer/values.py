"""Type tests for recipe values where no schema applies (open tables, param groups, scheduler arguments)."""

from __future__ import annotations

import math
from typing import Any


def is_number(value: Any) -> bool:
    """An int or float, not a bool (TOML's true would otherwise pass as 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A number that is neither nan nor ±inf (TOML writes both; either trains silently wrong)."""
    return is_number(value) and math.isfinite(value)
