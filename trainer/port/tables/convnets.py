"""Names of the convolutional networks: ResNet (plain, V1c, V1d, wide) and ResNeXt, ResNeSt, RepVGG,
MobileOne."""

from __future__ import annotations

import re

from trainer.port.tables.base import Rename, rules

_DEEP_STEM = {"0": "stem.0.conv", "1": "stem.0.bn", "3": "stem.1.conv", "4": "stem.1.bn", "6": "stem.2.conv"}


def resnet(deep_stem: bool, avg_down: bool) -> list[Rename]:
    """timm's ResNet (and ResNeXt) on MMPretrain's ResNet, ResNetV1c (deep stem) or ResNetV1d (avg_down)."""

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
    return rules(
        *stem,
        (r"layer(\d)\.(\d+)\.(conv[123]|bn[123])\.(\w+)", r"backbone.layer\1.\2.\3.\4"),
        (r"layer(\d)\.(\d+)\.downsample\.(\d)\.(\w+)", downsample),
        (r"fc\.(\w+)", r"HEAD.\1"),
    )


def resnest() -> list[Rename]:
    """timm's resnest* on MMPretrain's ResNeSt: a ResNetV1d with split-attention conv2 (conv, bn0, fc1, bn1,
    fc2)."""
    return [
        *rules((r"layer(\d)\.(\d+)\.conv2\.(\w+)\.(\w+)", r"backbone.layer\1.\2.conv2.\3.\4")),
        *resnet(deep_stem=True, avg_down=True),
    ]


_REPVGG_BRANCHES = {"conv_kxk": "branch_3x3", "conv_1x1": "branch_1x1"}
REPVGG = rules(
    (r"stem\.(conv_kxk|conv_1x1)\.(conv|bn)\.(\w+)", lambda m: _repvgg_branch("backbone.stem", m)),
    (
        r"stages\.(\d)\.(\d+)\.(conv_kxk|conv_1x1)\.(conv|bn)\.(\w+)",
        lambda m: _repvgg_branch(f"backbone.stage_{int(m[1]) + 1}.{m[2]}", m, 2),
    ),
    (
        r"stages\.(\d)\.(\d+)\.identity\.(\w+)",
        lambda m: f"backbone.stage_{int(m[1]) + 1}.{m[2]}.branch_norm.{m[3]}",
    ),
    (
        r"stages\.(\d)\.(\d+)\.attn\.fc([12])\.(\w+)",
        lambda m: f"backbone.stage_{int(m[1]) + 1}.{m[2]}.se_layer.conv{m[3]}.conv.{m[4]}",
    ),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)
"""timm's repvgg_* (training form) on MMPretrain's RepVGG (deploy=False)."""


def _repvgg_branch(block: str, m: re.Match[str], skip: int = 0) -> str:
    branch, layer, attr = m[1 + skip], m[2 + skip], m[3 + skip]
    return f"{block}.{_REPVGG_BRANCHES[branch]}.{'conv' if layer == 'conv' else 'norm'}.{attr}"


def _mobileone_branch(m: re.Match[str]) -> str:
    block = "backbone.stage0" if m[1] == "stem" else f"backbone.stage{int(m[2]) + 1}.{m[3]}"
    branch = f"branch_conv_list.{m[5]}" if m[4] == "conv_kxk" else "branch_scale"
    return f"{block}.{branch}.{'conv' if m[6] == 'conv' else 'norm'}.{m[7]}"


MOBILEONE = rules(
    (
        r"(stem|stages\.(\d)\.(\d+))\.(conv_kxk|conv_scale)\.?(\d*)\.(conv|bn)\.(\w+)",
        _mobileone_branch,
    ),
    (
        r"stages\.(\d)\.(\d+)\.identity\.(\w+)",
        lambda m: f"backbone.stage{int(m[1]) + 1}.{m[2]}.branch_norm.{m[3]}",
    ),
    (
        r"stages\.(\d)\.(\d+)\.attn\.fc([12])\.(\w+)",
        lambda m: f"backbone.stage{int(m[1]) + 1}.{m[2]}.se.conv{m[3]}.conv.{m[4]}",
    ),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)
"""timm's mobileone_* (training form) on MMPretrain's MobileOne (deploy=False)."""

CONVMIXER = rules(
    (r"stem\.(\d)\.(\w+)", r"backbone.stem.\1.\2"),
    (r"blocks\.(\d+)\.(.+)", r"backbone.stages.\1.\2"),
    (r"head\.(\w+)", r"HEAD.\1"),
)
"""timm's convmixer_* on MMPretrain's ConvMixer."""
