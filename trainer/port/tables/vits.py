"""Names of the plain transformers and MLPs: ViT/DeiT/DeiT III, BEiT and EVA, EVA-02, XCiT, TNT, MLP-Mixer."""

from __future__ import annotations

import re

from trainer.port.tables.base import Difference, Kind, Table, rules

VIT = rules(
    (r"(cls_token|dist_token|pos_embed)", r"backbone.\1"),
    (r"patch_embed\.proj\.(\w+)", r"backbone.patch_embed.projection.\1"),
    (r"blocks\.(\d+)\.norm([12])\.(\w+)", r"backbone.layers.\1.ln\2.\3"),
    (r"blocks\.(\d+)\.attn\.(qkv|proj)\.(\w+)", r"backbone.layers.\1.attn.\2.\3"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"backbone.layers.\1.ffn.layers.0.0.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"backbone.layers.\1.ffn.layers.1.\2"),
    (r"blocks\.(\d+)\.ls1\.gamma", r"backbone.layers.\1.attn.gamma1.weight"),
    (r"blocks\.(\d+)\.ls2\.gamma", r"backbone.layers.\1.ffn.gamma2.weight"),
    (r"norm\.(\w+)", r"backbone.ln1.\1"),
    (r"norm_pre\.(\w+)", r"backbone.pre_norm.\1"),
    (r"fc_norm\.(\w+)", r"backbone.ln2.\1"),
    (r"head\.(\w+)", r"HEAD.\1"),
    (r"head_dist\.(\w+)", r"HEAD_DIST.\1"),
)

BEIT = rules(
    (r"(cls_token|pos_embed)", r"backbone.\1"),
    (r"patch_embed\.proj\.(\w+)", r"backbone.patch_embed.projection.\1"),
    (r"rel_pos_bias\.relative_position_bias_table", r"backbone.rel_pos_bias.relative_position_bias_table"),
    (r"blocks\.(\d+)\.(gamma_[12])", r"backbone.layers.\1.\2"),
    (r"blocks\.(\d+)\.norm([12])\.(\w+)", r"backbone.layers.\1.ln\2.\3"),
    (r"blocks\.(\d+)\.attn\.(q_bias|v_bias|relative_position_bias_table)", r"backbone.layers.\1.attn.\2"),
    (r"blocks\.(\d+)\.attn\.(qkv|proj)\.(\w+)", r"backbone.layers.\1.attn.\2.\3"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"backbone.layers.\1.ffn.layers.0.0.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"backbone.layers.\1.ffn.layers.1.\2"),
    (r"fc_norm\.(\w+)", r"backbone.ln2.\1"),
    (r"head\.(\w+)", r"HEAD.\1"),
)
"""timm's beit_* (and, with absolute position embeddings and no layer scale, its eva_*) on BEiTViT."""

XCIT = rules(
    (r"cls_token", r"backbone.cls_token"),
    (r"patch_embed\.proj\.(\d+)\.([01])\.(\w+)", lambda m: _xcit_patch_embed(int(m[1]), int(m[2]), m[3])),
    (r"pos_embed\.token_projection\.(\w+)", r"backbone.pos_embed.token_projection.conv.\1"),
    (r"blocks\.(\d+)\.(gamma[123])", r"backbone.xca_layers.\1.\2"),
    (r"blocks\.(\d+)\.(norm[123])\.(\w+)", r"backbone.xca_layers.\1.\2.\3"),
    (r"blocks\.(\d+)\.attn\.(temperature|qkv\.\w+|proj\.\w+)", r"backbone.xca_layers.\1.attn.\2"),
    (r"blocks\.(\d+)\.local_mp\.(conv[12])\.(\w+)", r"backbone.xca_layers.\1.local_mp.\2.conv.\3"),
    (r"blocks\.(\d+)\.local_mp\.bn\.(\w+)", r"backbone.xca_layers.\1.local_mp.conv1.bn.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"backbone.xca_layers.\1.ffn.layers.0.0.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"backbone.xca_layers.\1.ffn.layers.1.\2"),
    (r"cls_attn_blocks\.(\d+)\.(gamma[12])", r"backbone.ca_layers.\1.\2"),
    (r"cls_attn_blocks\.(\d+)\.(norm[12])\.(\w+)", r"backbone.ca_layers.\1.\2.\3"),
    (r"cls_attn_blocks\.(\d+)\.attn\.([qkv]|proj)\.(\w+)", r"backbone.ca_layers.\1.attn.\2.\3"),
    (r"cls_attn_blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"backbone.ca_layers.\1.ffn.layers.0.0.\2"),
    (r"cls_attn_blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"backbone.ca_layers.\1.ffn.layers.1.\2"),
    (r"norm\.(\w+)", r"backbone.norm.\1"),
    (r"head\.(\w+)", r"HEAD.\1"),
)
"""timm's xcit_* on MMPretrain's XCiT."""


def _xcit_patch_embed(index: int, layer: int, attr: str) -> str:
    """timm's (conv, bn) pairs sit between GELUs (indices 0, 2, 4, ...); MMPretrain's ConvModules do not."""
    return f"backbone.patch_embed.proj.{index // 2}.{('conv', 'bn')[layer]}.{attr}"


EVA02 = Table(
    rules(
        (r"(cls_token|pos_embed)", r"backbone.\1"),
        (r"patch_embed\.proj\.(\w+)", r"backbone.patch_embed.projection.\1"),
        (r"blocks\.(\d+)\.(norm[12])\.(\w+)", r"backbone.layers.\1.\2.\3"),
        (r"blocks\.(\d+)\.attn\.[qv]_bias", r"backbone.layers.\1.attn.qkv.bias"),
        (r"blocks\.(\d+)\.attn\.[qkv]_proj\.(\w+)", r"backbone.layers.\1.attn.qkv.\2"),
        (r"blocks\.(\d+)\.attn\.(qkv\.weight|proj\.\w+)", r"backbone.layers.\1.attn.\2"),
        (r"blocks\.(\d+)\.mlp\.fc1(?:_g|_x)?\.(\w+)", r"backbone.layers.\1.mlp.w12.\2"),
        (r"blocks\.(\d+)\.mlp\.norm\.(\w+)", r"backbone.layers.\1.mlp.norm.\2"),
        (r"blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"backbone.layers.\1.mlp.w3.\2"),
        (r"fc_norm\.(\w+)", r"backbone.ln2.\1"),
        (r"head\.(\w+)", r"HEAD.\1"),
    ),
    (
        Difference(
            Kind.PART,
            r"blocks\.\d+\.attn\.([qv]_bias|[qkv]_proj\.\w+)",
            "timm's q, k and v projections (base, large) and q and v biases are thirds of MMPretrain's fused "
            "qkv; the k third of its bias, which the softmax cancels, timm keeps at 0",
        ),
        Difference(
            Kind.PART,
            r"blocks\.\d+\.mlp\.fc1_[gx]\.\w+",
            "timm's SwiGLU gate and value projections (base, large) are the halves of MMPretrain's w12",
        ),
    ),
)
"""timm's eva02_* on MMPretrain's ViTEVA02 (its SwiGLU's w12 is timm's fused fc1 in the tiny and small)."""

MLP_MIXER = Table(
    rules(
        (r"stem\.proj\.(\w+)", r"backbone.patch_embed.projection.\1"),
        (r"blocks\.(\d+)\.norm([12])\.(\w+)", r"backbone.layers.\1.ln\2.\3"),
        (r"blocks\.(\d+)\.mlp_tokens\.fc1\.(\w+)", r"backbone.layers.\1.token_mix.layers.0.0.\2"),
        (r"blocks\.(\d+)\.mlp_tokens\.fc2\.(\w+)", r"backbone.layers.\1.token_mix.layers.1.\2"),
        (r"blocks\.(\d+)\.mlp_channels\.fc1\.(\w+)", r"backbone.layers.\1.channel_mix.layers.0.0.\2"),
        (r"blocks\.(\d+)\.mlp_channels\.fc2\.(\w+)", r"backbone.layers.\1.channel_mix.layers.1.\2"),
        (r"norm\.(\w+)", r"backbone.ln1.\1"),
        (r"head\.(\w+)", r"HEAD.\1"),
    )
)
"""timm's mixer_* on MMPretrain's MlpMixer."""


_TNT_INNER = {"norm_in": "inner_block.norm_attn", "attn_in.proj": "inner_block.attn.attn.out_proj"}
_TNT_INNER |= {"norm_mlp_in": "inner_block.norm_ffn", "mlp_in.fc1": "inner_block.ffn.layers.0.0"}
_TNT_INNER |= {"mlp_in.fc2": "inner_block.ffn.layers.1", "norm1_proj": "norm_proj", "proj": "projection"}
_TNT_OUTER = {"norm_out": "outer_block.norm_attn", "attn_out.proj": "outer_block.attn.attn.out_proj"}
_TNT_OUTER |= {"norm_mlp": "outer_block.norm_ffn", "mlp.fc1": "outer_block.ffn.layers.0.0"}
_TNT_OUTER |= {"mlp.fc2": "outer_block.ffn.layers.1"}
_TNT_BLOCK = {**_TNT_INNER, **_TNT_OUTER}


def _tnt_block(m: re.Match[str]) -> str:
    if m[2] in ("attn_in", "attn_out"):  # qk and v: parts of nn.MultiheadAttention's in_proj_weight
        block = "inner_block" if m[2] == "attn_in" else "outer_block"
        return f"backbone.layers.{m[1]}.{block}.attn.attn.in_proj_weight"
    return f"backbone.layers.{m[1]}.{_TNT_BLOCK[m[2]]}.{m[3]}"


TNT = Table(
    rules(
        (r"(cls_token|patch_pos|pixel_pos)", r"backbone.\1"),
        (r"pixel_embed\.proj\.(\w+)", r"backbone.pixel_embed.proj.\1"),
        (r"(norm1_proj|norm2_proj|norm)\.(\w+)", r"backbone.\1.\2"),
        (r"proj\.(\w+)", r"backbone.projection.\1"),
        (r"blocks\.(\d+)\.(attn_in|attn_out)\.(?:qk|v)\.weight", _tnt_block),
        (
            r"blocks\.(\d+)\.(norm_in|attn_in\.proj|norm_mlp_in|mlp_in\.fc[12]|norm1_proj|proj|norm_out"
            r"|attn_out\.proj|norm_mlp|mlp\.fc[12])\.(\w+)",
            _tnt_block,
        ),
        (r"head\.(\w+)", r"HEAD.\1"),
    ),
    (
        Difference(
            Kind.PART,
            r"blocks\.\d+\.attn_(in|out)\.(qk|v)\.weight",
            "timm's qk and v projections are the first two thirds and the last of MMPretrain's "
            "nn.MultiheadAttention in_proj_weight",
        ),
    ),
)
"""timm's TNT in its legacy (original) layout on MMPretrain's TNT."""
