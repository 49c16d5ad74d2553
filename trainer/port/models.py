"""MMPretrain backbones -> timm models: the registry of handlers and what they share (trainer.port.backbones
holds the handlers, one module per group of families)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainer.port.report import Report


@dataclass
class TimmModel:
    """The timm model a backbone becomes; `family` names its parameter-name table (trainer.port.names)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    family: str | None = None


class NoTimmModel(Exception):
    """The backbone (or this configuration of it) has no timm equivalent."""


Handler = Callable[[dict[str, Any], str, Report], TimmModel]
HANDLERS: dict[str, Handler] = {}


def handles(*types: str) -> Callable[[Handler], Handler]:
    """Register a handler for these MMPretrain backbone types."""

    def add(fn: Handler) -> Handler:
        for t in types:
            HANDLERS[t] = fn
        return fn

    return add


SHARED = {"init_cfg", "type", "with_cp"}
"""Arguments every handler leaves to the caller (init_cfg, gradient checkpointing)."""


def check_args(
    backbone: dict[str, Any], key: str, report: Report, used: set[str], same: dict[str, Any], model: str
) -> None:
    """Report every argument that is neither used nor at a value that behaves like `model` in timm."""
    for arg, value in backbone.items():
        if arg in used or arg in SHARED:
            continue
        if arg in same and equal(value, same[arg]):
            continue
        report.skip(f"{key}.{arg}", f"{value!r} is not carried over to timm's {model}")
    if backbone.get("with_cp"):
        report.note(f"{key}.with_cp", "gradient checkpointing is not a recipe setting (it saves memory only)")


def equal(a: Any, b: Any) -> bool:
    """Config values compared with tuples and lists alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def arch_name(backbone: dict[str, Any], default: str, aliases: dict[str, str]) -> str:
    """The backbone's `arch` (lower-cased) looked up in `aliases`; NoTimmModel for a dict or unknown arch."""
    arch = backbone.get("arch", default)
    if not isinstance(arch, str):
        raise NoTimmModel(f"a custom arch {arch!r} (a dict) has no timm model name")
    name = aliases.get(arch.lower())
    if name is None:
        raise NoTimmModel(f"arch {arch!r} has no timm equivalent in the port's table")
    return name


def drop_path(backbone: dict[str, Any], default: float = 0.0) -> dict[str, float]:
    """timm's drop_path_rate from the backbone's (MMPretrain's default where the config leaves it out)."""
    return {"drop_path_rate": float(backbone.get("drop_path_rate", default))}


def sized(stem: str, img: int) -> tuple[str, dict[str, Any]]:
    """`{stem}_{img}` where timm has it, else `{stem}_224` (or another size of it) with img_size (position
    embeddings resized)."""
    import timm

    if timm.is_model(f"{stem}_{img}"):
        return f"{stem}_{img}", {}
    for other in (f"{stem}_224", *timm.list_models(f"{stem}_*")):
        if other[len(stem) + 1 :].isdigit() and timm.is_model(other):
            return other, {"img_size": img}
    raise NoTimmModel(f"timm has no model {stem}_{img!r} (nor {stem} at another size)")


def require(name: str) -> None:
    """NoTimmModel unless timm has a model called `name`."""
    import timm

    if not timm.is_model(name):
        raise NoTimmModel(f"timm has no model {name!r}")


def report_deploy(backbone: dict[str, Any], key: str, report: Report, model: str) -> None:
    """A re-parameterized (deploy) backbone is ported as timm's training form, with a warning."""
    if backbone.get("deploy"):
        report.skip(
            f"{key}.deploy",
            f"True (the fused inference form): the recipe trains timm's {model} in its training form "
            "(timm.utils.reparameterize_model fuses it after training)",
        )
