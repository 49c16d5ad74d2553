"""Build the timm model a recipe names, optionally with local initial weights."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import torch

from trainer.errors import RecipeError, did_you_mean
from trainer.schema import ModelCfg
from trainer.schema_errors import validate_section

# Keys of [model] that are ours; every other key goes to timm.create_model.
OWN_KEYS = ("name", "weights", "channels_last", "compile")


def timm_kwargs(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments for `timm.create_model` (everything in [model] that is not ours)."""
    return {k: v for k, v in model_cfg.items() if k not in OWN_KEYS}


def validate_model_cfg(model_cfg: dict[str, Any]) -> None:
    """Check `[model]` by its schema and its name against timm's registry (did-you-mean on typos)."""
    import timm

    name = validate_section(ModelCfg, model_cfg, ("model",)).name
    if not timm.is_model(name):
        names = timm.list_models()
        hint = did_you_mean(name, names) or did_you_mean(name, timm.list_models(f"*{name[:4]}*"))
        raise RecipeError("model.name", f"unknown timm model {name!r}{hint}")


def build_model(model_cfg: dict[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """`timm.create_model(name, pretrained=False, **kwargs)` on `device` ("meta" builds no storage)."""
    import timm

    kwargs = timm_kwargs(model_cfg)
    try:
        with torch.device(device):
            model = timm.create_model(model_cfg["name"], pretrained=False, **kwargs)
    except TypeError as err:
        raise _kwarg_error(model_cfg["name"], err) from None
    weights = model_cfg.get("weights")
    if weights is not None and str(device) != "meta":
        load_weights(model, weights)
    if model_cfg.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model


def _kwarg_error(name: str, err: TypeError) -> RecipeError:
    m = re.search(r"unexpected keyword argument '(\w+)'", str(err))
    if not m:
        return RecipeError("model", f"timm.create_model({name!r}, ...) failed: {err}")
    import timm

    bad = m.group(1)
    choices: list[str] = []
    try:
        entry = timm.models.model_entrypoint(name)
        module = inspect.getmodule(entry)
        classes = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, torch.nn.Module) and obj.__module__ == module.__name__
        ]
        for cls in classes:
            choices.extend(p for p in inspect.signature(cls.__init__).parameters if p != "self")
    except Exception:  # noqa: BLE001 - suggestions are best effort
        pass
    return RecipeError(
        f"model.{bad}", f"{name!r} does not accept argument {bad!r}{did_you_mean(bad, sorted(set(choices)))}"
    )


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a local safetensors state dict strictly; keys whose shape differs (a new head) are dropped."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise RecipeError("model.weights", f"no such file: {str(path)!r}")
    state = load_file(str(path))
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for k in dropped:  # a num_classes change: keep the fresh head, as timm does with pretrained weights
        del state[k]
    missing = sorted(set(own) - set(state) - set(dropped))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        raise RecipeError("model.weights", f"{str(path)!r} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)


def _short(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)})"
