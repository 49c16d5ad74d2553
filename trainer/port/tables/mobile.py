"""Names of the mobile hybrids: LeViT, TinyViT, EfficientFormer, MobileViT."""

from __future__ import annotations

import re

from trainer.port.tables.base import Difference, Kind, Table, rules

_LEVIT_ATTN = {"qkv": "qkv", "kv": "kv", "q.ln": "q.1", "proj.ln": "proj.1"}


def _levit_stem(m: re.Match[str]) -> str:
    layer = "conv" if m[2] == "linear" else "bn"
    return f"backbone.patch_embed.patch_embed.{2 * (int(m[1]) - 1)}.{layer}.{m[3]}"


def _levit_block(m: re.Match[str]) -> str:
    """MMPretrain's stage is one sequence: (subsample, its MLP) from the second stage on, then (attention,
    MLP) per block, each but the subsample in a Residual (`.block`)."""
    stage, index, part, rest = int(m[1]), int(m[2]), m[3], m[4]
    position = (0 if stage == 0 else 2) + 2 * index + (part == "mlp")
    return f"backbone.stages.{stage}.{position}.block.{_levit_sub(rest)}"


def _levit_downsample(m: re.Match[str]) -> str:
    if m[2] == "attn_downsample":
        return f"backbone.stages.{m[1]}.0.{_levit_sub(m[3])}"
    return f"backbone.stages.{m[1]}.1.block.{_levit_sub(m[3])}"


def _levit_sub(rest: str) -> str:
    for timm, mm in (*_LEVIT_ATTN.items(), ("ln1", "linear1"), ("ln2", "linear2")):
        if rest.startswith(f"{timm}."):
            return f"{mm}.{rest[len(timm) + 1 :]}"
    return rest


LEVIT = Table(
    rules(
        (r"stem\.conv(\d)\.(linear|bn)\.(\w+)", _levit_stem),
        (r"stages\.(\d)\.blocks\.(\d+)\.(attn|mlp)\.(.+)", _levit_block),
        (r"stages\.(\d)\.downsample\.(attn_downsample|mlp)\.(.+)", _levit_downsample),
        (r"head\.(bn|linear)\.(\w+)", r"HEAD.\1.\2"),
    ),
    (
        Difference(
            Kind.MMPRETRAIN_ONLY,
            r"head\.head_dist\..+",
            "the distillation classifier of LeViTClsHead(distillation=True), which MMPretrain cannot train",
        ),
    ),
)
"""timm's levit_* (distilled=False) on MMPretrain's LeViT with its LeViTClsHead."""


_TINYVIT_CONV_BN = {"conv": "conv2d", "bn": "bn2d"}
"""MMPretrain's Conv2d-BN pairs name their layers conv2d and bn2d."""


def _tinyvit_stage_conv(m: re.Match[str]) -> str:
    """Stage i's downsampling is timm's stage i + 1's."""
    stage = int(m[1]) - (1 if m[2].startswith("downsample.") else 0)
    return f"backbone.stages.{stage}.{m[2]}.{_TINYVIT_CONV_BN[m[3]]}.{m[4]}"


TINYVIT = Table(
    rules(
        (
            r"patch_embed\.conv([12])\.(conv|bn)\.(\w+)",  # a Sequential with a GELU between
            lambda m: f"backbone.patch_embed.seq.{2 * int(m[1]) - 2}.{_TINYVIT_CONV_BN[m[2]]}.{m[3]}",
        ),
        (
            r"stages\.(\d)\.(blocks\.\d+\.(?:conv[123]|local_conv)|downsample\.conv[123])\.(conv|bn)\.(\w+)",
            _tinyvit_stage_conv,
        ),
        (r"stages\.(\d)\.blocks\.(\d+)\.(attn|mlp)\.(.+)", r"backbone.stages.\1.blocks.\2.\3.\4"),
        (r"head\.norm\.(\w+)", r"backbone.norm3.\1"),
        (r"head\.fc\.(\w+)", r"HEAD.\1"),
    )
)
"""timm's tiny_vit_* on MMPretrain's TinyViT."""


_BN = {"conv": "conv", "norm": "bn"}


def _efficientformer_block(m: re.Match[str]) -> str:
    """MMPretrain's stage i (`network.i`) starts with its downsampling from the second stage on."""
    stage, index = int(m[1]), int(m[2]) + (1 if m[1] != "0" else 0)
    rest = re.sub(r"^(ls[12])\.gamma$", r"\1.weight", m[3])
    return f"backbone.network.{stage}.{index}.{rest}"


EFFICIENTFORMER = Table(
    rules(
        (
            r"stem\.(conv|norm)([12])\.(\w+)",
            lambda m: f"backbone.patch_embed.{int(m[2]) - 1}.{_BN[m[1]]}.{m[3]}",
        ),
        (
            r"stages\.(\d)\.downsample\.(conv|norm)\.(\w+)",
            lambda m: f"backbone.network.{m[1]}.0.{_BN[m[2]]}.{m[3]}",
        ),
        (r"stages\.(\d)\.blocks\.(\d+)\.(.+)", _efficientformer_block),
        (r"norm\.(\w+)", r"backbone.norm3.\1"),
        (r"head\.(\w+)", r"HEAD.\1"),
        (r"head_dist\.(\w+)", r"HEAD_DIST.\1"),
    )
)
"""timm's efficientformer_* on MMPretrain's EfficientFormer with its EfficientFormerClsHead."""

_MOBILEVIT_TRANSFORMER_DEPTHS = {2: 2, 3: 4, 4: 3}
"""Transformer blocks in MobileViT's stages 2-4 (all three sizes): MMPretrain's global_rep puts its norm
after them."""
_MOBILEVIT_CONVS = {"conv1_1x1": "conv.0", "conv2_kxk": "conv.1", "conv3_1x1": "conv.2"}
_MOBILEVIT_CONVS |= {"conv_kxk": "local_rep.0", "conv_1x1": "local_rep.1.conv"}
_MOBILEVIT_TRANSFORMER = {
    "norm1": "ln1",
    "norm2": "ln2",
    "mlp.fc1": "ffn.layers.0.0",
    "mlp.fc2": "ffn.layers.1",
}


def _mobilevit_block(m: re.Match[str]) -> str:
    stage, block, rest = int(m[1]), m[2], m[3]
    head, _, tail = rest.partition(".")
    if head in _MOBILEVIT_CONVS:
        rest = f"{_MOBILEVIT_CONVS[head]}.{tail}"
    elif head == "transformer":
        index, _, inner = tail.partition(".")
        for timm, mm in _MOBILEVIT_TRANSFORMER.items():
            if inner.startswith(f"{timm}."):
                inner = mm + inner[len(timm) :]
        rest = f"global_rep.{index}.{inner}"
    elif head == "norm":
        rest = f"global_rep.{_MOBILEVIT_TRANSFORMER_DEPTHS[stage]}.{tail}"
    return f"backbone.layers.{stage}.{block}.{rest}"


MOBILEVIT = Table(
    rules(
        (r"stem\.(conv|bn)\.(\w+)", r"backbone.stem.\1.\2"),
        (r"stages\.(\d)\.(\d+)\.(.+)", _mobilevit_block),
        (r"final_conv\.(conv|bn)\.(\w+)", r"backbone.conv_1x1_exp.\1.\2"),
        (r"head\.fc\.(\w+)", r"HEAD.\1"),
    )
)
"""timm's mobilevit_* on MMPretrain's MobileViT."""
