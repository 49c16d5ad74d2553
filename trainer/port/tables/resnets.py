"""Names of the residual networks: ResNet (plain, V1c, V1d, wide, SE) and ResNeXt, ResNeSt, Res2Net,
RegNet."""

from __future__ import annotations

import re

from trainer.port.tables.base import Rename, rules

_DEEP_STEM = {"0": "stem.0.conv", "1": "stem.0.bn", "3": "stem.1.conv", "4": "stem.1.bn", "6": "stem.2.conv"}


def resnet(deep_stem: bool, avg_down: bool, se: bool = False) -> list[Rename]:
    """timm's ResNet (and ResNeXt, wide and SE variants) on MMPretrain's ResNet, ResNetV1c (deep stem) or
    ResNetV1d (avg_down), SEResNet and SEResNeXt (se)."""

    def downsample(m: re.Match[str]) -> str:
        index = int(m[3])
        if avg_down and m[1] == "1":  # MMPretrain adds the pooling only where the block strides
            index -= 1
        return f"backbone.layer{m[1]}.{m[2]}.downsample.{index}.{m[4]}"

    stem = (
        [
            (r"conv1\.([0-9])\.(\w+)", lambda m: f"backbone.{_DEEP_STEM[m[1]]}.{m[2]}"),
            (r"bn1\.(\w+)", r"backbone.stem.2.bn.\1"),
        ]
        if deep_stem
        else [(r"conv1\.(\w+)", r"backbone.conv1.\1"), (r"bn1\.(\w+)", r"backbone.bn1.\1")]
    )
    squeeze = [(r"layer(\d)\.(\d+)\.se\.fc([12])\.(\w+)", r"backbone.layer\1.\2.se_layer.conv\3.conv.\4")]
    return rules(
        *stem,
        (r"layer(\d)\.(\d+)\.(conv[123]|bn[123])\.(\w+)", r"backbone.layer\1.\2.\3.\4"),
        (r"layer(\d)\.(\d+)\.downsample\.(\d)\.(\w+)", downsample),
        *(squeeze if se else []),
        (r"fc\.(\w+)", r"HEAD.\1"),
    )


def resnest() -> list[Rename]:
    """timm's resnest* on MMPretrain's ResNeSt: a ResNetV1d with split-attention conv2 (conv, bn0, fc1, bn1,
    fc2)."""
    return [
        *rules((r"layer(\d)\.(\d+)\.conv2\.(\w+)\.(\w+)", r"backbone.layer\1.\2.conv2.\3.\4")),
        *resnet(deep_stem=True, avg_down=True),
    ]


def res2net() -> list[Rename]:
    """timm's res2net* on MMPretrain's Res2Net (deep_stem and avg_down off): a ResNet whose conv2 is split
    into `convs` and `bns`."""
    return [
        *rules((r"layer(\d)\.(\d+)\.(convs|bns)\.(\d+)\.(\w+)", r"backbone.layer\1.\2.\3.\4.\5")),
        *resnet(deep_stem=False, avg_down=False),
    ]


REGNET = rules(
    (r"stem\.conv\.weight", r"backbone.conv1.weight"),
    (r"stem\.bn\.(\w+)", r"backbone.bn1.\1"),
    (
        r"s(\d)\.b(\d+)\.(conv[123])\.(conv|bn)\.(\w+)",
        lambda m: (
            f"backbone.layer{m[1]}.{int(m[2]) - 1}.{m[3] if m[4] == 'conv' else 'bn' + m[3][-1]}.{m[5]}"
        ),
    ),
    (
        r"s(\d)\.b(\d+)\.downsample\.(conv|bn)\.(\w+)",
        lambda m: f"backbone.layer{m[1]}.{int(m[2]) - 1}.downsample.{0 if m[3] == 'conv' else 1}.{m[4]}",
    ),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)
"""timm's regnetx_* on MMPretrain's RegNet (a ResNet: layer1..4 of bottlenecks from block 0)."""
