"""Every backbone handler, registered on import; `map_backbone` picks the one for a backbone's type."""

from __future__ import annotations

from typing import Any

from trainer.port.backbones import mobile, pyramids, resnets, vits
from trainer.port.models import HANDLERS, NoTimmModel, TimmModel
from trainer.port.report import Report

GROUPS = (mobile, pyramids, resnets, vits)


def map_backbone(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    """The timm model of `backbone`; NoTimmModel where there is none. Arguments that do not carry over
    are reported under `key`."""
    kind = backbone.get("type")
    handler = HANDLERS.get(kind)
    if handler is None:
        raise NoTimmModel(f"backbone type {kind!r} has no timm equivalent in the port's table")
    return handler(backbone, key, report)
