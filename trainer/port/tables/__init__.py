"""The renaming tables, by family: timm's parameter names -> MMPretrain's (applied by trainer.port.names)."""

from __future__ import annotations

import re
from collections.abc import Callable

from trainer.port.tables.base import Table
from trainer.port.tables.convnets import (
    CONVMIXER,
    DENSENET,
    HRNET,
    INCEPTION_V3,
    MOBILEONE,
    REPVGG,
    cspnet,
    vgg,
)
from trainer.port.tables.efficientnets import efficientnet, efficientnet_v2, mobilenet_v2, mobilenet_v3
from trainer.port.tables.mobile import EFFICIENTFORMER, LEVIT, MOBILEVIT, TINYVIT
from trainer.port.tables.pyramids import CONVNEXT, DAVIT, EDGENEXT, POOLFORMER, SWIN, SWIN_V2, TWINS, mvit
from trainer.port.tables.resnets import REGNET, res2net, resnest, resnet
from trainer.port.tables.vits import BEIT, EVA02, MLP_MIXER, TNT, VIT, XCIT


def _resnet(model_name: str) -> Table | None:
    if re.fullmatch(r"(se)?resnext\d+_\d+x\d+d|wide_resnet\d+_2|seresnet\d+", model_name):
        return Table(resnet(deep_stem=False, avg_down=False, se=model_name.startswith("se")))
    suffix = re.fullmatch(r"resnet\d+([cd]?)", model_name)
    if suffix is None:
        return None
    return Table(resnet(deep_stem=suffix[1] in ("c", "d"), avg_down=suffix[1] == "d"))


FAMILIES: dict[str, Callable[[str], Table | None]] = {
    "vit": lambda _: Table(VIT),
    "beit": lambda _: Table(BEIT),
    "swin": lambda _: Table(SWIN),
    "convnext": lambda _: Table(CONVNEXT),
    "resnet": _resnet,
    "repvgg": lambda _: Table(REPVGG),
    "xcit": lambda _: Table(XCIT),
    "swinv2": lambda _: Table(SWIN_V2),
    "mobileone": lambda _: Table(MOBILEONE),
    "levit": lambda _: LEVIT,
    "tinyvit": lambda _: TINYVIT,
    "edgenext": lambda _: Table(EDGENEXT),
    "poolformer": lambda _: Table(POOLFORMER),
    "eva02": lambda _: EVA02,
    "mvit": mvit,
    "resnest": lambda _: Table(resnest()),
    "davit": lambda _: Table(DAVIT),
    "convmixer": lambda _: Table(CONVMIXER),
    "efficientformer": lambda _: EFFICIENTFORMER,
    "twins": lambda _: Table(TWINS),
    "mlp_mixer": lambda _: MLP_MIXER,
    "vgg": vgg,
    "densenet": lambda _: Table(DENSENET),
    "inception_v3": lambda _: Table(INCEPTION_V3),
    "mobilevit": lambda _: MOBILEVIT,
    "cspnet": cspnet,
    "mobilenetv2": mobilenet_v2,
    "mobilenetv3": mobilenet_v3,
    "efficientnet": efficientnet,
    "efficientnetv2": efficientnet_v2,
    "tnt": lambda _: TNT,
    "res2net": lambda _: Table(res2net()),
    "regnet": lambda _: Table(REGNET),
    "hrnet": lambda _: HRNET,
}
"""Each family's rules for a timm model name (None: that model has no table)."""
