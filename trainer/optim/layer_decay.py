"""Layer-wise lr decay (BEiT / MAE fine-tuning, MMPretrain's LearningRateDecayOptimWrapperConstructor).

Layer ids come from timm's own ``group_matcher`` via ``timm.models.group_parameters``, so any timm model
that defines it works. A parameter in layer i of n gets lr = base × lr_mult × decay_rate ** (n - 1 - i);
weight decay follows the Default constructor's rules, plus (on by default) no decay for 1-D parameters and
the names in ``model.no_weight_decay()``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trainer.errors import RecipeError, did_you_mean
from trainer.optim.constructor_cfg import constructor_args
from trainer.optim.groups import make_optimizer
from trainer.optim.hyperparams import base_hyperparams
from trainer.optim.paramwise import plan_parameters
from trainer.optim.paramwise_options import parse_paramwise
from trainer.optim.rules import RuleMatcher
from trainer.values import is_number

ARGS = ("decay_rate", "layer_decay_rate", "exclude_1d", "exclude_no_weight_decay")


def validate_layer_decay_args(args: dict[str, Any]) -> None:
    """``decay_rate`` in (0, 1] (MMPretrain's name ``layer_decay_rate`` also works); two bool switches."""
    for arg, value in args.items():
        key = f"optimizer.constructor.{arg}"
        if arg not in ARGS:
            raise RecipeError(
                key,
                f"LayerDecay does not take {arg!r}{did_you_mean(arg, ARGS)} (it takes: {', '.join(ARGS)})",
            )
        if arg in ("exclude_1d", "exclude_no_weight_decay") and not isinstance(value, bool):
            raise RecipeError(key, f"must be true or false, got {value!r}")
        if arg in ("decay_rate", "layer_decay_rate") and (not is_number(value) or not 0 < value <= 1):
            raise RecipeError(key, f"must be a number in (0, 1], got {value!r}")
    if "decay_rate" in args and "layer_decay_rate" in args:
        raise RecipeError(
            "optimizer.constructor.layer_decay_rate", "set decay_rate or layer_decay_rate, not both"
        )
    if "decay_rate" not in args and "layer_decay_rate" not in args:
        raise RecipeError(
            "optimizer.constructor.decay_rate", "required by LayerDecay, e.g. decay_rate = 0.65"
        )


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """{parameter name: layer id} from timm's group_matcher(coarse=False), and the number of layers."""
    matcher = getattr(model, "group_matcher", None)
    if not callable(matcher):
        raise RecipeError(
            "optimizer.constructor.type",
            f"LayerDecay needs a model that defines group_matcher() (timm models do); "
            f"{type(model).__name__} does not",
        )
    from timm.models import group_parameters

    layer_map = group_parameters(model, matcher(coarse=False), reverse=True)
    return layer_map, max(layer_map.values(), default=0) + 1


def layer_decay_constructor(
    model: nn.Module, optimizer_cfg: dict[str, Any], paramwise_cfg: dict[str, Any]
) -> torch.optim.Optimizer:
    """Default constructor's multipliers × decay_rate ** (num_layers - 1 - layer_id) on the lr."""
    args = constructor_args(optimizer_cfg)
    validate_layer_decay_args(args)
    rate = args.get("decay_rate", args.get("layer_decay_rate"))
    options = parse_paramwise(paramwise_cfg, optimizer_cfg)
    if args.get("exclude_1d", True) and options.flat_decay_mult is None:
        options = replace(options, flat_decay_mult=0.0)
    no_decay = None
    if args.get("exclude_no_weight_decay", True) and callable(getattr(model, "no_weight_decay", None)):
        no_decay = RuleMatcher(sorted(model.no_weight_decay()))
    layer_map, num_layers = layer_ids(model)
    plans = plan_parameters(model, options, no_decay=no_decay)
    for plan in plans:
        plan.layer_id = layer_map.get(plan.name, num_layers - 1)
        plan.lr_scale = rate ** (num_layers - 1 - plan.layer_id)
    return make_optimizer(optimizer_cfg, plans, base_hyperparams(optimizer_cfg))


layer_decay_constructor.validate_args = validate_layer_decay_args  # type: ignore[attr-defined]
