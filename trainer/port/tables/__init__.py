"""The renaming tables, by family: timm's parameter names -> MMPretrain's (applied by trainer.port.names)."""

from __future__ import annotations

import re
from collections.abc import Callable

from trainer.port.tables.base import Rename
from trainer.port.tables.convnets import REPVGG, resnet
from trainer.port.tables.pyramids import CONVNEXT, SWIN
from trainer.port.tables.vits import BEIT, VIT


def _resnet(model_name: str) -> list[Rename] | None:
    if re.fullmatch(r"resnext\d+_\d+x\d+d", model_name):
        return resnet(deep_stem=False, avg_down=False)
    suffix = re.fullmatch(r"resnet\d+([cd]?)", model_name)
    if suffix is None:
        return None
    return resnet(deep_stem=suffix[1] in ("c", "d"), avg_down=suffix[1] == "d")


FAMILIES: dict[str, Callable[[str], list[Rename] | None]] = {
    "vit": lambda _: VIT,
    "beit": lambda _: BEIT,
    "swin": lambda _: SWIN,
    "convnext": lambda _: CONVNEXT,
    "resnet": _resnet,
    "repvgg": lambda _: REPVGG,
}
"""Each family's rules for a timm model name (None: that model has no table)."""
