"""ParamPlan: how one parameter is optimized, shared by the constructors and the param-group builder."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class ParamPlan:
    """How one parameter is optimized: its multipliers and why (the rule that matched, the type rule)."""

    name: str
    param: nn.Parameter
    rule: str | None = None
    kind: str | None = None
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    frozen: bool = False
    duplicate_of: str | None = None
    layer_id: int | None = None
    lr_scale: float = 1.0
