"""timm.create_model with its failures as one-line RecipeErrors, and what a timm model says about itself
(where its name points, its input channels)."""

from __future__ import annotations

import inspect
import os
import re
from typing import Any

import torch

from trainer.errors import RecipeError, did_you_mean


def model_source(name: str) -> tuple[str | None, str]:
    """timm's (source, id) of a model name: ("hf-hub", "user/repo"), ("local-dir", path) or (None, name)."""
    from timm.models import parse_model_name

    try:
        return parse_model_name(name)
    except ValueError as err:
        raise RecipeError("model.name", str(err)) from None


def create(
    name: str,
    kwargs: dict[str, Any],
    device: str | torch.device,
    key: str,
    pretrained: bool = False,
    overlay: dict[str, Any] | None = None,
    label: str | None = None,
) -> torch.nn.Module:
    """timm.create_model with its failures as one-line RecipeErrors (`key` is blamed for source problems)."""
    import timm

    try:
        with torch.device(device):
            return timm.create_model(name, pretrained=pretrained, pretrained_cfg_overlay=overlay, **kwargs)
    except TypeError as err:
        raise _kwarg_error(name, err) from None
    except OSError as err:  # no config.json; huggingface_hub: offline and not cached, no such repo, network
        from_hub = type(err).__module__.startswith("huggingface_hub")
        offline = (
            " (HF_HUB_OFFLINE is set: only what is in the cache loads)" if from_hub and _offline() else ""
        )
        detail = (
            first_line(err)
            if isinstance(err, FileNotFoundError)
            else f"{type(err).__name__}: {first_line(err)}"
        )
        raise RecipeError(key, f"cannot load {label or repr(name)}: {detail}{offline}") from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


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


def model_in_chans(model: torch.nn.Module) -> int:
    """Input channels of a timm model: its `first_conv` module's in_channels (pretrained_cfg keeps 3)."""
    first_conv = getattr(model, "pretrained_cfg", {}).get("first_conv")
    if isinstance(first_conv, str):
        try:
            return int(model.get_submodule(first_conv).in_channels)
        except (AttributeError, TypeError):
            pass
    return int(getattr(model, "in_chans", 3))


def first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
