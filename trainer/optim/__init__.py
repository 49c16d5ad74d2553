"""Optimizers from recipes: the optimizer registry, paramwise rules, constructors (Default, LayerDecay)."""

from trainer.optim.build import build_optimizer, unwrap_model
from trainer.optim.config import validate_optimizer_cfg
from trainer.optim.constructors import CONSTRUCTORS, register_constructor
from trainer.optim.inspect import describe_params, format_description
from trainer.optim.paramwise import default_constructor
from trainer.optim.paramwise_options import validate_paramwise_cfg
from trainer.optim.registry import OPTIMIZERS, register_optimizer

__all__ = [
    "CONSTRUCTORS",
    "OPTIMIZERS",
    "build_optimizer",
    "default_constructor",
    "describe_params",
    "format_description",
    "register_constructor",
    "register_optimizer",
    "unwrap_model",
    "validate_optimizer_cfg",
    "validate_paramwise_cfg",
]
