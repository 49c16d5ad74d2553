"""Names of the plain transformers and MLPs: ViT/DeiT/DeiT III, BEiT and EVA, EVA-02, XCiT, MLP-Mixer."""

from __future__ import annotations

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
    (r"norm\.(\w+)", r"backbone.ln1.\1"),
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
