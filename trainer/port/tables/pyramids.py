"""Names of the multi-stage networks: Swin V1/V2, ConvNeXt, EdgeNeXt, PoolFormer, MViTv2, DaViT, Twins."""

from __future__ import annotations

import re

from trainer.port.tables.base import Table, rules

SWIN = rules(
    (r"patch_embed\.proj\.(\w+)", r"backbone.patch_embed.projection.\1"),
    (r"patch_embed\.norm\.(\w+)", r"backbone.patch_embed.norm.\1"),
    (r"layers\.(\d+)\.blocks\.(\d+)\.(norm[12])\.(\w+)", r"backbone.stages.\1.blocks.\2.\3.\4"),
    (
        r"layers\.(\d+)\.blocks\.(\d+)\.attn\.(relative_position_bias_table|qkv\.\w+|proj\.\w+)",
        r"backbone.stages.\1.blocks.\2.attn.w_msa.\3",
    ),
    (r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"backbone.stages.\1.blocks.\2.ffn.layers.0.0.\3"),
    (r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"backbone.stages.\1.blocks.\2.ffn.layers.1.\3"),
    # timm downsamples at the start of stage i, MMPretrain at the end of stage i - 1
    (
        r"layers\.(\d+)\.downsample\.(norm|reduction)\.(\w+)",
        lambda m: f"backbone.stages.{int(m[1]) - 1}.downsample.{m[2]}.{m[3]}",
    ),
    (r"norm\.(\w+)", r"backbone.norm3.\1"),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)

CONVNEXT = rules(
    (r"stem\.([01])\.(\w+)", r"backbone.downsample_layers.0.\1.\2"),
    (r"stages\.(\d+)\.downsample\.([01])\.(\w+)", r"backbone.downsample_layers.\1.\2.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.gamma", r"backbone.stages.\1.\2.gamma"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.(\w+)", r"backbone.stages.\1.\2.depthwise_conv.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.norm\.(\w+)", r"backbone.stages.\1.\2.norm.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc([12])\.(\w+)", r"backbone.stages.\1.\2.pointwise_conv\3.\4"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.grn\.weight", r"backbone.stages.\1.\2.grn.gamma"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.grn\.bias", r"backbone.stages.\1.\2.grn.beta"),
    (r"head\.norm\.(\w+)", r"backbone.norm3.\1"),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)

SWIN_V2 = rules(
    (r"patch_embed\.proj\.(\w+)", r"backbone.patch_embed.projection.\1"),
    (r"patch_embed\.norm\.(\w+)", r"backbone.patch_embed.norm.\1"),
    (r"layers\.(\d+)\.blocks\.(\d+)\.(norm[12])\.(\w+)", r"backbone.stages.\1.blocks.\2.\3.\4"),
    (r"layers\.(\d+)\.blocks\.(\d+)\.attn\.(.+)", r"backbone.stages.\1.blocks.\2.attn.w_msa.\3"),
    (r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"backbone.stages.\1.blocks.\2.ffn.layers.0.0.\3"),
    (r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"backbone.stages.\1.blocks.\2.ffn.layers.1.\3"),
    (r"layers\.(\d+)\.downsample\.(norm|reduction)\.(\w+)", r"backbone.stages.\1.downsample.\2.\3"),
    (r"norm\.(\w+)", r"backbone.norm3.\1"),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)
"""timm's swinv2_* on MMPretrain's SwinTransformerV2 (both downsample at the start of a stage)."""

_EDGENEXT_BLOCK = {
    "conv_dw": "depthwise_conv",
    "mlp.fc1": "pointwise_conv1",
    "mlp.fc2": "pointwise_conv2",
    "gamma_xca": "gamma_csa",
    "convs": "conv_modules",
    "pos_embd.token_projection": "pos_embed.proj",
    "norm_xca": "norm_csa",
    "xca.temperature": "csa.scale",
    "xca": "csa",
}
"""timm's EdgeNeXt block parts -> MMPretrain's (its SDTA block calls cross-covariance attention csa)."""


def _edgenext_block(m: re.Match[str]) -> str:
    rest = m[3]
    for timm, mm in _EDGENEXT_BLOCK.items():
        if rest == timm or rest.startswith(f"{timm}."):
            rest = mm + rest[len(timm) :]
            break
    return f"backbone.stages.{m[1]}.{m[2]}.{rest}"


EDGENEXT = rules(
    (r"stem\.([01])\.(\w+)", r"backbone.downsample_layers.0.\1.\2"),
    (r"stages\.(\d)\.downsample\.([01])\.(\w+)", r"backbone.downsample_layers.\1.\2.\3"),
    (r"stages\.(\d)\.blocks\.(\d+)\.(.+)", _edgenext_block),
    (r"head\.norm\.(\w+)", r"backbone.norm3.\1"),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)
"""timm's edgenext_* on MMPretrain's EdgeNeXt (downsample_layers as ConvNeXt's)."""


def _poolformer_block(m: re.Match[str]) -> str:
    """MMPretrain's `network` alternates stages (2i) and the patch embeddings between them (2i + 1)."""
    rest = re.sub(r"^layer_scale([12])\.scale$", r"layer_scale_\1", m[3])
    return f"backbone.network.{2 * int(m[1])}.{m[2]}.{rest}"


POOLFORMER = rules(
    (r"stem\.conv\.(\w+)", r"backbone.patch_embed.proj.\1"),
    (r"stages\.(\d)\.downsample\.conv\.(\w+)", lambda m: f"backbone.network.{2 * int(m[1]) - 1}.proj.{m[2]}"),
    (r"stages\.(\d)\.blocks\.(\d+)\.(.+)", _poolformer_block),
    (r"head\.norm\.(\w+)", r"backbone.norm6.\1"),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)
"""timm's poolformer_* (MetaFormer) on MMPretrain's PoolFormer."""


def mvit(model_name: str) -> Table | None:
    """timm's mvitv2_* on MMPretrain's MViT, whose blocks are one sequence (timm's per stage)."""
    from timm.models.mvitv2 import model_cfgs

    cfg = model_cfgs.get(model_name)
    if cfg is None:
        return None
    starts = [sum(cfg.depths[:i]) for i in range(len(cfg.depths))]

    def block(m: re.Match[str]) -> str:
        rest = re.sub(r"^shortcut_proj_(attn|mlp)\.", "proj.", m[3])
        return f"backbone.blocks.{starts[int(m[1])] + int(m[2])}.{rest}"

    return Table(
        rules(
            (r"patch_embed\.proj\.(\w+)", r"backbone.patch_embed.projection.\1"),
            (r"stages\.(\d)\.blocks\.(\d+)\.(.+)", block),
            (r"norm\.(\w+)", r"backbone.norm3.\1"),
            (r"head\.fc\.(\w+)", r"HEAD.\1"),
        )
    )


_DAVIT_PARTS = {"mlp.fc1": "ffn.layers.0.0", "mlp.fc2": "ffn.layers.1"}


def _davit_block(m: re.Match[str]) -> str:
    """timm's (spatial, channel) block pair is MMPretrain's spatial_block and channel_block; the window
    attention is its w_msa."""
    rest = m[4]
    for timm, mm in _DAVIT_PARTS.items():
        if rest.startswith(f"{timm}."):
            rest = mm + rest[len(timm) :]
    if m[3] == "0":
        rest = re.sub(r"^attn\.", "attn.w_msa.", rest)
    return f"backbone.stages.{m[1]}.blocks.{m[2]}.{('spatial_block', 'channel_block')[int(m[3])]}.{rest}"


DAVIT = rules(
    (r"stem\.conv\.(\w+)", r"backbone.patch_embed.projection.\1"),
    (r"stem\.norm\.(\w+)", r"backbone.patch_embed.norm.\1"),
    (r"stages\.(\d)\.blocks\.(\d+)\.([01])\.(.+)", _davit_block),
    # timm downsamples at the start of stage i, MMPretrain at the end of stage i - 1
    (
        r"stages\.(\d)\.downsample\.conv\.(\w+)",
        lambda m: f"backbone.stages.{int(m[1]) - 1}.downsample.projection.{m[2]}",
    ),
    (
        r"stages\.(\d)\.downsample\.norm\.(\w+)",
        lambda m: f"backbone.stages.{int(m[1]) - 1}.downsample.norm.{m[2]}",
    ),
    (r"head\.norm\.(\w+)", r"backbone.norm3.\1"),
    (r"head\.fc\.(\w+)", r"HEAD.\1"),
)
"""timm's davit_* on MMPretrain's DaViT."""

TWINS = rules(
    (r"patch_embeds\.(\d)\.proj\.(\w+)", r"backbone.patch_embeds.\1.projection.\2"),
    (r"patch_embeds\.(\d)\.norm\.(\w+)", r"backbone.patch_embeds.\1.norm.\2"),
    (r"blocks\.(\d)\.(\d+)\.(norm[12]|attn)\.(.+)", r"backbone.stages.\1.\2.\3.\4"),
    (r"blocks\.(\d)\.(\d+)\.mlp\.fc1\.(\w+)", r"backbone.stages.\1.\2.ffn.layers.0.0.\3"),
    (r"blocks\.(\d)\.(\d+)\.mlp\.fc2\.(\w+)", r"backbone.stages.\1.\2.ffn.layers.1.\3"),
    (r"pos_block\.(\d)\.proj\.0\.(\w+)", r"backbone.position_encodings.\1.proj.\2"),
    (r"norm\.(\w+)", r"backbone.norm_after_stage3.\1"),
    (r"head\.(\w+)", r"HEAD.\1"),
)
"""timm's twins_pcpvt_* and twins_svt_* on MMPretrain's PCPVT and SVT."""
