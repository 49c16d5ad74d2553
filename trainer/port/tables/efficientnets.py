"""Names of timm's EfficientNet-builder networks: MobileNet V2/V3 and EfficientNet V1/V2.

timm names a block's layers by the block's kind (a depthwise-separable block's pointwise conv is conv_pw,
an inverted residual's expansion is too) and groups blocks in its own stages; MMPretrain numbers blocks
its own way. So these tables read the block kinds and strides of the timm model itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from trainer.port.tables.base import Difference, Kind, Table, rules

Block = tuple[str, int]
"""A timm block's class name and stride."""

_DS = {"conv_dw": "depthwise_conv.conv", "bn1": "depthwise_conv.bn", "conv_pw": "linear_conv.conv"}
_DS |= {"bn2": "linear_conv.bn"}
_IR = {"conv_pw": "expand_conv.conv", "bn1": "expand_conv.bn", "conv_dw": "depthwise_conv.conv"}
_IR |= {"bn2": "depthwise_conv.bn", "conv_pwl": "linear_conv.conv", "bn3": "linear_conv.bn"}
_ER = {"conv_exp": "conv1.conv", "bn1": "conv1.bn", "conv_pwl": "conv2.conv", "bn2": "conv2.bn"}
_CBA = {"conv": "conv", "bn1": "bn"}
_LAYERS = {"DepthwiseSeparableConv": _DS, "InvertedResidual": _IR, "EdgeResidual": _ER, "ConvBnAct": _CBA}
"""timm's layer names per block kind -> MMPretrain's (MobileNet V3, EfficientNet V1/V2)."""
_V2_LAYERS = {
    "DepthwiseSeparableConv": {"conv_dw": "conv.0.conv", "bn1": "conv.0.bn", "conv_pw": "conv.1.conv"}
    | {"bn2": "conv.1.bn"},
    "InvertedResidual": {"conv_pw": "conv.0.conv", "bn1": "conv.0.bn", "conv_dw": "conv.1.conv"}
    | {"bn2": "conv.1.bn", "conv_pwl": "conv.2.conv", "bn3": "conv.2.bn"},
}
"""The same for MMPretrain's MobileNetV2, whose blocks are a Sequential of ConvModules."""
_SE = {"se.conv_reduce": "se.conv1.conv", "se.conv_expand": "se.conv2.conv"}


@lru_cache(maxsize=32)
def timm_blocks(model_name: str) -> tuple[tuple[Block, ...], ...]:
    """The kind and stride of every block of timm's model, per timm stage (built on the meta device)."""
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(model_name)
    out = []
    for stage in model.blocks:
        blocks = []
        for block in stage:
            conv = getattr(block, "conv_dw", None) or getattr(block, "conv_exp", None) or block.conv
            blocks.append((type(block).__name__, conv.stride[0]))
        out.append(tuple(blocks))
    return tuple(out)


def _positions(
    stages: tuple[tuple[Block, ...], ...], where: Callable[[int, int, int], str]
) -> dict[tuple[int, int], tuple[str, str]]:
    """{(timm stage, index): (MMPretrain block path, block kind)}; `where` gets (stage, index, flat index)."""
    out = {}
    flat = 0
    for s, stage in enumerate(stages):
        for b, (kind, _) in enumerate(stage):
            out[s, b] = (where(s, b, flat), kind)
            flat += 1
    return out


def _by_stride(stages: tuple[tuple[Block, ...], ...]) -> Callable[[int, int, int], str]:
    """MMPretrain's EfficientNet (V1) stages: the first block, then a new stage at every stride-2 block."""
    groups: dict[int, tuple[int, int]] = {}
    group, index, flat = 0, 0, 0
    for stage in stages:
        for _, stride in stage:
            if flat == 0 or stride == 2:
                group, index = group + 1, 0
            groups[flat] = (group, index)
            index += 1
            flat += 1
    return lambda s, b, f: f"backbone.layers.{groups[f][0]}.{groups[f][1]}"


def _table(
    positions: dict[tuple[int, int], tuple[str, str]],
    layers: dict[str, dict[str, str]],
    stem: str,
    head: list[tuple[str, str]],
    differences: tuple[Difference, ...] = (),
) -> Table:
    def block(m: re.Match[str]) -> str:
        path, kind = positions[int(m[1]), int(m[2])]
        names = {**layers[kind], **_SE}
        return f"{path}.{names[m[3]]}.{m[4]}"

    return Table(
        rules(
            (r"conv_stem\.weight", f"{stem}.conv.weight"),
            (r"bn1\.(\w+)", rf"{stem}.bn.\1"),
            (r"blocks\.(\d+)\.(\d+)\.(se\.conv_reduce|se\.conv_expand|\w+)\.(\w+)", block),
            *head,
            (r"classifier\.(\w+)", r"HEAD.\1"),
        ),
        differences,
    )


def mobilenet_v3(model_name: str) -> Table:
    """timm's mobilenetv3_* on MMPretrain's MobileNetV3 (blocks layer1, layer2, ... in one sequence) with
    its StackedLinearClsHead, whose hidden Linear is timm's conv_head."""
    positions = _positions(timm_blocks(model_name), lambda s, b, f: f"backbone.layer{f + 1}")
    head = [(r"conv_head\.(\w+)", r"HEAD_MID.\1")]
    reshaped = Difference(
        Kind.RESHAPED, r"conv_head\.weight", "timm's hidden head layer is a 1x1 convolution"
    )
    return _table(positions, _LAYERS, "backbone.layer0", head, (reshaped,))


def mobilenet_v2(model_name: str) -> Table:
    """timm's mobilenetv2_* on MMPretrain's MobileNetV2 (the same stages, layer1 to layer7)."""
    positions = _positions(timm_blocks(model_name), lambda s, b, f: f"backbone.layer{s + 1}.{b}")
    head = [(r"conv_head\.weight", "backbone.conv2.conv.weight"), (r"bn2\.(\w+)", r"backbone.conv2.bn.\1")]
    return _table(positions, _V2_LAYERS, "backbone.conv1", head)


def efficientnet(model_name: str) -> Table:
    """timm's tf_efficientnet_* on MMPretrain's EfficientNet, which starts a stage at each stride-2 block."""
    stages = timm_blocks(model_name)
    positions = _positions(stages, _by_stride(stages))
    last = 1 + max(int(path.split(".")[2]) for path, _ in positions.values())
    head = [(r"conv_head\.weight", f"backbone.layers.{last}.conv.weight")]
    head += [(r"bn2\.(\w+)", rf"backbone.layers.{last}.bn.\1")]
    return _table(positions, _LAYERS, "backbone.layers.0", head)


def efficientnet_v2(model_name: str) -> Table:
    """timm's tf_efficientnetv2_* on MMPretrain's EfficientNetV2 (the same stages, layers 1 to n)."""
    stages = timm_blocks(model_name)
    positions = _positions(stages, lambda s, b, f: f"backbone.layers.{s + 1}.{b}")
    last = len(stages) + 1
    head = [(r"conv_head\.weight", f"backbone.layers.{last}.conv.weight")]
    head += [(r"bn2\.(\w+)", rf"backbone.layers.{last}.bn.\1")]
    return _table(positions, _LAYERS, "backbone.layers.0", head)
