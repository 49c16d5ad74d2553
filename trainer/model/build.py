"""Build the timm model a recipe names: `[model]` checked against timm's registry, created on a device,
with its initial weights loaded by timm's own machinery (trainer.model.weights)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from trainer.errors import RecipeError, did_you_mean
from trainer.model.create import create, model_source
from trainer.model.schema import ModelCfg
from trainer.model.weights import create_with_weights, initial_weights
from trainer.sections import validate_section

# Keys of [model] that are ours; every other key goes to timm.create_model.
OWN_KEYS = ("name", "pretrained", "weights", "channels_last", "compile")
MODEL_FOLDER_SOURCES = ("hf-hub", "local-dir")
"""timm's name prefixes for a model folder (config.json + weights)."""


def timm_kwargs(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments for `timm.create_model` (everything in [model] that is not ours)."""
    return {k: v for k, v in model_cfg.items() if k not in OWN_KEYS}


def validate_model_cfg(model_cfg: dict[str, Any]) -> None:
    """Check `[model]` by its schema and its name against timm's registry (did-you-mean on typos); a
    "local-dir:" folder must hold timm's config.json naming a known architecture."""
    import timm

    name = validate_section(ModelCfg, model_cfg, ("model",)).name
    source, ident = model_source(name)
    if source == "local-dir":
        folder = Path(ident).expanduser()
        if not (folder / "config.json").is_file():
            what = "has no config.json (timm's model folder format)" if folder.is_dir() else "no such folder"
            raise RecipeError("model.name", f"{name!r}: {what} (relative to {os.getcwd()})")
        return
    if source is not None:  # hf-hub: checked when the model is built (from the cache, or downloaded)
        return
    if not timm.is_model(name):
        names = timm.list_models()
        hint = did_you_mean(name, names) or did_you_mean(name, timm.list_models(f"*{name[:4]}*"))
        raise RecipeError("model.name", f"unknown timm model {name!r}{hint}")


def build_model(model_cfg: dict[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """`timm.create_model(name, **kwargs)` on `device` with the recipe's initial weights ("meta" builds no
    storage and loads no weights); prints one line saying what timm adapted to fit the weights."""
    kwargs = timm_kwargs(model_cfg)
    source = None if str(device) == "meta" else initial_weights(model_cfg)  # the dry run reads no weights
    if source is None:
        model = create(model_cfg["name"], kwargs, device, key="model.name")
    else:
        model = create_with_weights(model_cfg["name"], kwargs, source, device)
    if model_cfg.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model
