"""Merge per-parameter plans into few param groups (equal settings share one) and build the optimizer."""

from __future__ import annotations

from typing import Any

import torch

from trainer.errors import RecipeError
from trainer.optim.hyperparams import BaseHyperparams
from trainer.optim.plan import ParamPlan
from trainer.optim.registry import instantiate_optimizer

REPORT_ATTR = "paramwise_report"
"""Attribute of a built optimizer: {parameter name: {"rule", "kind"}} for every parameter, frozen included."""


def group_name(layer_id: int | None, lr_mult: float, decay_mult: float) -> str:
    """A readable name made of what distinguishes the group: ``layer_3,lr_mult=0.1,no_decay``."""
    parts = [] if layer_id is None else [f"layer_{layer_id}"]
    if lr_mult != 1.0:
        parts.append(f"lr_mult={lr_mult!r}")
    if decay_mult == 0.0:
        parts.append("no_decay")
    elif decay_mult != 1.0:
        parts.append(f"decay_mult={decay_mult!r}")
    return ",".join(parts) or "default"


def build_param_groups(plans: list[ParamPlan], base: BaseHyperparams) -> list[dict[str, Any]]:
    """One group per distinct (layer_id, lr_mult, decay_mult), in order of first appearance.

    ``lr`` = base lr × lr_mult × lr_scale and ``weight_decay`` = base × decay_mult are set on the group, so a
    schedule that scales each group's initial lr keeps the ratios; metadata: name, lr_mult, decay_mult,
    param_names (and layer_id, lr_scale for layer decay).
    """
    groups: dict[tuple, dict[str, Any]] = {}
    for plan in plans:
        if plan.frozen or plan.duplicate_of is not None:
            continue
        key = (plan.layer_id, plan.lr_mult, plan.decay_mult)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _new_group(plan, base)
        group["params"].append(plan.param)
        group["param_names"].append(plan.name)
    return list(groups.values())


def _new_group(plan: ParamPlan, base: BaseHyperparams) -> dict[str, Any]:
    group: dict[str, Any] = {
        "name": group_name(plan.layer_id, plan.lr_mult, plan.decay_mult),
        "params": [],
        "param_names": [],
    }
    if base.lr is not None:
        group["lr"] = base.lr * plan.lr_mult * plan.lr_scale
    elif plan.lr_mult != 1.0 or plan.lr_scale != 1.0:
        raise RecipeError(
            "optimizer.lr", f"needed to scale the lr of {plan.name!r}: the optimizer has no default lr"
        )
    if base.weight_decay is not None:
        group["weight_decay"] = base.weight_decay * plan.decay_mult
    group["lr_mult"] = plan.lr_mult
    group["decay_mult"] = plan.decay_mult
    if plan.layer_id is not None:
        group["layer_id"] = plan.layer_id
        group["lr_scale"] = plan.lr_scale
    return group


def make_optimizer(
    optimizer_cfg: dict[str, Any], plans: list[ParamPlan], base: BaseHyperparams
) -> torch.optim.Optimizer:
    """Build the optimizer over the merged groups and attach the per-parameter report for inspection."""
    groups = build_param_groups(plans, base)
    if not groups:
        raise RecipeError("paramwise", "no trainable parameter left: every parameter is frozen")
    optimizer = instantiate_optimizer(optimizer_cfg, groups)
    setattr(optimizer, REPORT_ATTR, {p.name: {"rule": p.rule, "kind": p.kind} for p in plans})
    return optimizer
