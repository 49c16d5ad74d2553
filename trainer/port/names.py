"""Parameter names: timm's name -> the name MMPretrain gives the same parameter, per model family.

MMEngine matches custom_keys as substrings of MMPretrain's names (`backbone.layers.0.ln1.weight`); the
recipe's rules are globs on timm's (`blocks.0.norm1.weight`). With these tables the port evaluates each
key on the MMPretrain name of every timm parameter. tests/fixtures/mmpretrain/param_names/ holds the
names of MMPretrain's own models, against which the tables are tested.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Rename = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def _rules(*pairs: tuple[str, str | Callable[[re.Match[str]], str]]) -> list[Rename]:
    return [(re.compile(p), r) for p, r in pairs]


VIT = _rules(
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

SWIN = _rules(
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

CONVNEXT = _rules(
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

_DEEP_STEM = {"0": "stem.0.conv", "1": "stem.0.bn", "3": "stem.1.conv", "4": "stem.1.bn", "6": "stem.2.conv"}


def _resnet(deep_stem: bool, avg_down: bool) -> list[Rename]:
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
    return _rules(
        *stem,
        (r"layer(\d)\.(\d+)\.(conv[123]|bn[123])\.(\w+)", r"backbone.layer\1.\2.\3.\4"),
        (r"layer(\d)\.(\d+)\.downsample\.(\d)\.(\w+)", downsample),
        (r"fc\.(\w+)", r"HEAD.\1"),
    )


def family_rules(family: str, model_name: str) -> list[Rename] | None:
    """The renaming rules of `family` as it applies to timm's `model_name` (None: no table)."""
    if family == "vit":
        return VIT
    if family == "swin":
        return SWIN
    if family == "convnext":
        return CONVNEXT
    if family == "resnet":
        suffix = re.fullmatch(r"resnet\d+([cd]?)", model_name)
        if suffix is None:
            return None
        return _resnet(deep_stem=suffix[1] in ("c", "d"), avg_down=suffix[1] == "d")
    return None


HEADS = {
    "LinearClsHead": {"HEAD": "head.fc"},
    "VisionTransformerClsHead": {"HEAD": "head.layers.head"},
    "DeiTClsHead": {"HEAD": "head.layers.head", "HEAD_DIST": "head.layers.head_dist"},
}
"""Where each MMPretrain head keeps the classifier's Linear (the tables write HEAD for it)."""


def mmpretrain_names(
    family: str | None, model_name: str, timm_names: list[str], head: str | None = "LinearClsHead"
) -> dict[str, str] | None:
    """{timm name: MMPretrain name} for every parameter, or None where a name has no rule (no table)."""
    rules = family_rules(family, model_name) if family else None
    if rules is None or head not in HEADS:
        return None
    out: dict[str, str] = {}
    for name in timm_names:
        for pattern, replacement in rules:
            m = pattern.fullmatch(name)
            if m:
                renamed = replacement(m) if callable(replacement) else m.expand(replacement)
                stem, _, attr = renamed.partition(".")
                if stem in ("HEAD", "HEAD_DIST"):
                    if stem not in HEADS[head]:
                        return None
                    renamed = f"{HEADS[head][stem]}.{attr}"
                out[name] = renamed
                break
        else:
            return None
    return out
