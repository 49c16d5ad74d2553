"""Names of the plain transformers: ViT/DeiT/DeiT III, BEiT and EVA."""

from __future__ import annotations

from trainer.port.tables.base import rules

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
