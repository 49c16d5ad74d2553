"""Names of the other convolutional networks: RepVGG, MobileOne, ConvMixer, VGG, DenseNet, Inception V3,
CSPNet, HRNet."""

from __future__ import annotations

import re

from trainer.port.tables.base import Difference, Kind, Table, rules

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
    (r"stem\.attn\.fc([12])\.(\w+)", r"backbone.stem.se_layer.conv\1.conv.\2"),
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


def vgg(model_name: str) -> Table | None:
    """timm's vgg* on MMPretrain's VGG, which classifies in the backbone (its head is a ClsHead)."""
    from timm.models.vgg import cfgs

    layout = cfgs.get(model_name.removesuffix("_bn"))
    if layout is None:
        return None
    bn = model_name.endswith("_bn")
    convs: dict[int, int] = {}  # timm's features index of each conv -> MMPretrain's
    timm_index = mm_index = 0
    for v in layout:
        if v != "M":
            convs[timm_index] = mm_index
        timm_index += 1 if v == "M" else (3 if bn else 2)
        mm_index += 1

    def feature(m: re.Match[str]) -> str:
        index = int(m[1])
        layer = "conv" if index in convs else "bn"
        return f"backbone.features.{convs.get(index, convs.get(index - 1))}.{layer}.{m[2]}"

    return Table(
        rules(
            (r"features\.(\d+)\.(\w+)", feature),
            (r"pre_logits\.fc1\.(\w+)", r"backbone.classifier.0.\1"),
            (r"pre_logits\.fc2\.(\w+)", r"backbone.classifier.3.\1"),
            (r"head\.fc\.(\w+)", r"backbone.classifier.6.\1"),
        ),
        (
            Difference(
                Kind.RESHAPED,
                r"pre_logits\.fc[12]\.weight",
                "timm's classifier runs its first two Linears as 7x7 and 1x1 convolutions",
            ),
        ),
    )


def _densenet_block(m: re.Match[str]) -> str:
    return f"backbone.stages.{int(m[1]) - 1}.block.{int(m[2]) - 1}.{m[3]}"


DENSENET = rules(
    (r"features\.conv0\.(\w+)", r"backbone.stem.0.\1"),
    (r"features\.norm0\.(\w+)", r"backbone.stem.1.\1"),
    (r"features\.denseblock(\d)\.denselayer(\d+)\.(.+)", _densenet_block),
    (
        r"features\.transition(\d)\.(norm|conv)\.(\w+)",
        lambda m: f"backbone.transitions.{int(m[1]) - 1}.{m[2]}.{m[3]}",
    ),
    (r"features\.norm5\.(\w+)", r"backbone.transitions.3.0.\1"),  # its last transition is the final norm
    (r"classifier\.(\w+)", r"HEAD.\1"),
)
"""timm's densenet* on MMPretrain's DenseNet."""

INCEPTION_V3 = rules((r"(.+)", r"backbone.\1"))
"""timm's inception_v3 on MMPretrain's InceptionV3, which classifies in the backbone (fc, AuxLogits)."""

_CSP_STAGE = {
    "conv_down": "downsample_conv",
    "conv_exp": "expand_conv",
    "conv_transition_b": "atfer_blocks_conv",  # sic
    "conv_transition": "final_conv",
}


def cspnet(model_name: str) -> Table:
    """timm's cspdarknet53, cspresnet50 and cspresnext50 on MMPretrain's CSPDarkNet, CSPResNet and
    CSPResNeXt (whose bottlenecks keep plain conv and bn layers, the dark blocks ConvModules)."""
    dark = model_name.startswith("cspdarknet")
    stem = "backbone.stem" if dark else "backbone.stem.0"

    def block(m: re.Match[str]) -> str:
        where = f"backbone.stages.{m[1]}.blocks.{m[2]}"
        if dark:
            return f"{where}.conv{m[3]}.{m[4]}.{m[5]}"
        return f"{where}.{'conv' if m[4] == 'conv' else 'bn'}{m[3]}.{m[5]}"

    return Table(
        rules(
            (r"stem\.conv1\.(conv|bn)\.(\w+)", lambda m: f"{stem}.{m[1]}.{m[2]}"),
            (r"stages\.(\d)\.blocks\.(\d+)\.conv(\d)\.(conv|bn)\.(\w+)", block),
            (
                r"stages\.(\d)\.(conv_down|conv_exp|conv_transition_b|conv_transition)\.(conv|bn)\.(\w+)",
                lambda m: f"backbone.stages.{m[1]}.{_CSP_STAGE[m[2]]}.{m[3]}.{m[4]}",
            ),
            (r"head\.fc\.(\w+)", r"HEAD.\1"),
        )
    )


HRNET = Table(
    rules(
        (r"(conv[12]|bn[12]|layer1|transition\d|stage\d)\.(.+)", r"backbone.\1.\2"),
        (r"incre_modules\.(.+)", r"neck.0.increase_layers.\1"),
        (r"downsamp_modules\.(\d)\.0\.(\w+)", r"neck.0.downsample_layers.\1.conv.\2"),
        (r"downsamp_modules\.(\d)\.1\.(\w+)", r"neck.0.downsample_layers.\1.bn.\2"),
        (r"final_layer\.0\.(\w+)", r"neck.0.final_layer.conv.\1"),
        (r"final_layer\.1\.(\w+)", r"neck.0.final_layer.bn.\1"),
        (r"classifier\.(\w+)", r"HEAD.\1"),
    ),
    (
        Difference(
            Kind.TIMM_ONLY,
            r"(downsamp_modules\.\d|final_layer)\.0\.bias",
            "timm's classification-head convolutions before a BatchNorm have a bias, MMPretrain's "
            "HRFuseScales neck's none",
        ),
    ),
)
"""timm's hrnet_w* on MMPretrain's HRNet with its HRFuseScales neck (timm's classification head)."""
