"""The timm model a recipe trains: `[model]`'s schema and checks, creation, and initial weights."""

from trainer.model.build import OWN_KEYS, build_model, timm_kwargs, validate_model_cfg
from trainer.model.create import model_in_chans, model_source
from trainer.model.weights import WeightsSource, initial_weights, load_exact

__all__ = [
    "OWN_KEYS",
    "WeightsSource",
    "build_model",
    "initial_weights",
    "load_exact",
    "model_in_chans",
    "model_source",
    "timm_kwargs",
    "validate_model_cfg",
]
