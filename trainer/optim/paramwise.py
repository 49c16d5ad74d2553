"""MMEngine's DefaultOptimWrapperConstructor semantics: per-parameter lr/decay multipliers from paramwise."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from trainer.errors import RecipeError, did_you_mean
from trainer.optim.groups import make_optimizer
from trainer.optim.hyperparams import base_hyperparams
from trainer.optim.paramwise_options import ParamwiseOptions, parse_paramwise
from trainer.optim.plan import ParamPlan
from trainer.optim.rules import RuleMatcher

NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
"""MMEngine's norm layers; subclasses count (timm's LayerNorm2d, BatchNormAct2d); RMSNorm does not."""


@lru_cache(maxsize=1)
def dcn_types() -> tuple[type, ...]:
    """mmcv's deformable convolutions, as MMEngine detects them (empty without mmcv-full)."""
    try:
        from mmcv.ops import DeformConv2d, ModulatedDeformConv2d
    except Exception:  # noqa: BLE001 - mmcv missing or built without ops
        return ()
    return (DeformConv2d, ModulatedDeformConv2d)


def walk_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module, bool | None]]:
    """(prefix, module, parent_is_dcn) depth-first, own parameters before children, as MMEngine recurses."""
    dcn = dcn_types()
    stack: list[tuple[str, nn.Module, bool | None]] = [("", model, None)]
    while stack:
        prefix, module, parent_is_dcn = stack.pop()
        yield prefix, module, parent_is_dcn
        is_dcn = bool(dcn) and isinstance(module, dcn)
        children = [(f"{prefix}.{n}" if prefix else n, child, is_dcn) for n, child in module.named_children()]
        stack.extend(reversed(children))


def plan_parameters(
    model: nn.Module,
    options: ParamwiseOptions,
    *,
    no_decay: RuleMatcher | None = None,
) -> list[ParamPlan]:
    """One plan per parameter occurrence, in MMEngine's traversal order; applies ``freeze`` rules.

    A rule (first match in precedence order) replaces the type multipliers, as in MMEngine. `no_decay`
    (LayerDecay's model.no_weight_decay() names) zeroes weight decay of unruled parameters.
    Raises RecipeError for shared parameters without ``bypass_duplicate`` and for rules that match nothing.
    """
    matcher = RuleMatcher([r.glob for r in options.rules])
    rules = {r.glob: r for r in options.rules}
    seen: dict[int, ParamPlan] = {}
    plans: list[ParamPlan] = []
    for prefix, module, parent_is_dcn in walk_modules(model):
        flags = None
        for attr, param in module.named_parameters(recurse=False):
            name = f"{prefix}.{attr}" if prefix else attr
            first = seen.get(id(param))
            if first is not None:
                if not first.frozen and not (options.bypass_duplicate or options.empty):
                    raise RecipeError(
                        "paramwise.bypass_duplicate",
                        f"parameter {name!r} is the same tensor as {first.name!r} (shared or tied); "
                        "set bypass_duplicate = true to optimize it once, under its first name",
                    )
                plans.append(
                    ParamPlan(
                        name,
                        param,
                        rule=first.rule,
                        kind="duplicate",
                        duplicate_of=first.name,
                        frozen=first.frozen,
                    )
                )
                continue
            plan = ParamPlan(name, param, rule=matcher.match(name))
            seen[id(param)] = plan
            plans.append(plan)
            rule = rules.get(plan.rule)
            if not param.requires_grad or (rule is not None and rule.freeze):
                plan.frozen = True
                continue
            if rule is not None:
                plan.lr_mult, plan.decay_mult = rule.lr_mult, rule.decay_mult
                continue
            if flags is None:
                flags = _module_flags(module, prefix, parent_is_dcn)
            _apply_type_multipliers(plan, attr, options, flags, no_decay)
    _check_rules_used(model, options, plans)
    for plan in plans:  # only once the recipe is known to be good: freezing changes the model
        if plan.frozen:
            plan.param.requires_grad_(False)
    return plans


@dataclass(frozen=True)
class _Flags:
    is_norm: bool
    is_dwconv: bool
    parent_is_dcn: bool | None
    is_dcn_offset: bool


def _module_flags(module: nn.Module, prefix: str, parent_is_dcn: bool | None) -> _Flags:
    return _Flags(
        is_norm=isinstance(module, NORM_TYPES),
        # MMEngine's test: only Conv2d, and in_channels == groups (so a 1-input-channel Conv2d counts).
        is_dwconv=isinstance(module, nn.Conv2d) and module.in_channels == module.groups,
        parent_is_dcn=parent_is_dcn,
        is_dcn_offset="conv_offset" in prefix and bool(parent_is_dcn) and isinstance(module, nn.Conv2d),
    )


def _apply_type_multipliers(
    plan: ParamPlan, attr: str, options: ParamwiseOptions, flags: _Flags, no_decay: RuleMatcher | None
) -> None:
    """MMEngine's lr rules (bias, dcn offset) and weight-decay chain norm > bias > dwconv > flat."""
    kinds: list[str] = []
    is_bias = attr == "bias"
    if is_bias and not (flags.is_norm or flags.parent_is_dcn) and options.bias_lr_mult is not None:
        plan.lr_mult = options.bias_lr_mult
        kinds.append("bias")
    if flags.is_dcn_offset and options.dcn_offset_lr_mult is not None:
        plan.lr_mult = options.dcn_offset_lr_mult
        kinds.append("dcn_offset")
    if no_decay is not None and no_decay.match(plan.name) is not None:
        plan.decay_mult = 0.0
        kinds.append("no_weight_decay")
    elif flags.is_norm and options.norm_decay_mult is not None:
        plan.decay_mult = options.norm_decay_mult
        kinds.append("norm")
    elif is_bias and not flags.parent_is_dcn and options.bias_decay_mult is not None:
        plan.decay_mult = options.bias_decay_mult
        kinds.append("bias")
    elif flags.is_dwconv and options.dwconv_decay_mult is not None:
        plan.decay_mult = options.dwconv_decay_mult
        kinds.append("dwconv")
    elif plan.param.ndim == 1 and not flags.parent_is_dcn and options.flat_decay_mult is not None:
        plan.decay_mult = options.flat_decay_mult
        kinds.append("flat")
    plan.kind = "+".join(dict.fromkeys(kinds)) or None


def _check_rules_used(model: nn.Module, options: ParamwiseOptions, plans: list[ParamPlan]) -> None:
    """A rule that wins for no parameter is a recipe error: it matches nothing, or longer rules shadow it."""
    used = {p.rule for p in plans}
    for rule in options.rules:
        if rule.glob in used:
            continue
        names = [p.name for p in plans]
        matched = RuleMatcher.matches_any(rule.glob, names)
        if matched:
            winner = next(p.rule for p in plans if p.name == matched[0])
            raise RecipeError(
                rule.key,
                f"has no effect: every parameter it matches ({len(matched)}, e.g. {matched[0]!r}) takes "
                f"a longer rule first ({winner!r}); rules are tried longest first, ties alphabetically",
            )
        raise RecipeError(
            rule.key, f"matches no parameter of {type(model).__name__}{_no_match_hint(rule.glob, names)}"
        )


def _no_match_hint(glob: str, names: list[str]) -> str:
    if glob.startswith("."):
        return f"; names have no leading dot (MMEngine's {glob!r} is {glob[1:]!r} here)"
    as_substring = RuleMatcher.matches_any(f"*{glob}*", names)
    if as_substring:
        return (
            f"; globs match whole names: '*{glob}*' would match {len(as_substring)} parameters, "
            f"e.g. {as_substring[0]!r}"
        )
    hint = did_you_mean(glob, names)
    if hint:
        return hint
    literal = re.split(r"[*?\[]", glob, maxsplit=1)[0]
    for prefix in reversed([literal[: i + 1] for i, c in enumerate(literal) if c == "."]):
        near = [n for n in names if n.startswith(prefix)]
        if near:
            return f"; {len(near)} names start with {prefix!r}: {near[0]!r} ... {near[-1]!r}"
    return f"; names look like {', '.join(repr(n) for n in names[:3])}"


def default_constructor(
    model: nn.Module, optimizer_cfg: dict[str, Any], paramwise_cfg: dict[str, Any]
) -> torch.optim.Optimizer:
    """MMEngine's DefaultOptimWrapperConstructor: lr = base × lr_mult, weight_decay = base × decay_mult."""
    options = parse_paramwise(paramwise_cfg, optimizer_cfg)
    plans = plan_parameters(model, options)
    return make_optimizer(optimizer_cfg, plans, base_hyperparams(optimizer_cfg))


def _no_args(args: dict[str, Any]) -> None:
    for arg in args:
        raise RecipeError(f"optimizer.constructor.{arg}", "the Default constructor takes no arguments")


default_constructor.validate_args = _no_args  # type: ignore[attr-defined]
