"""Plain (single-scale) transformers and MLPs: ViT/DeiT, DeiT III, BEiT, EVA, EVA-02, XCiT, TNT, MLP-Mixer."""

from __future__ import annotations

from typing import Any

from trainer.port.models import (
    NoTimmModel,
    TimmModel,
    arch_name,
    check_args,
    drop_path,
    handles,
    require,
    sized,
)
from trainer.port.report import Report

VIT_SAME = {
    "in_channels": 3,
    "out_indices": -1,
    "drop_rate": 0.0,
    "qkv_bias": True,
    "norm_cfg": {"type": "LN", "eps": 1e-6},
    "final_norm": True,
    "out_type": "cls_token",
    "with_cls_token": True,
    "frozen_stages": -1,
    "interpolate_mode": "bicubic",
    "layer_scale_init_value": 0.0,
    "patch_cfg": {},
    "layer_cfgs": {},
    "pre_norm": False,
    "beit_style": False,
}


def dropout(backbone: dict[str, Any]) -> dict[str, float]:
    """MMPretrain's drop_rate (after the position embedding, the attention projection and in the FFN) is
    timm's pos_drop_rate and proj_drop_rate (timm's drop_rate is the head's dropout)."""
    rate = float(backbone.get("drop_rate", 0.0))
    return {"pos_drop_rate": rate, "proj_drop_rate": rate} if rate else {}


@handles("VisionTransformer", "DistilledVisionTransformer")
def _vit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {
        "deit-t": "deit_tiny",
        "deit-tiny": "deit_tiny",
        "deit-s": "deit_small",
        "deit-small": "deit_small",
    }
    sizes |= {"deit-b": "deit_base", "deit-base": "deit_base", "b": "vit_base", "base": "vit_base"}
    sizes |= {"l": "vit_large", "large": "vit_large", "h": "vit_huge", "huge": "vit_huge"}
    stem = arch_name(backbone, "base", sizes)
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    distilled = "_distilled" if backbone["type"] == "DistilledVisionTransformer" else ""
    if distilled and not stem.startswith("deit"):
        raise NoTimmModel("DistilledVisionTransformer with a non-DeiT arch has no timm equivalent")
    name, kwargs = sized(f"{stem}{distilled}_patch{patch}", img)
    kwargs |= drop_path(backbone) | dropout(backbone)
    out_type, final_norm = backbone.get("out_type", "cls_token"), backbone.get("final_norm", True)
    if out_type == "avg_featmap":
        kwargs["global_pool"] = "avg"  # timm: no final norm, the average of the patch tokens, fc_norm
        if final_norm:
            report.skip(
                f"{key}.final_norm",
                "True with avg_featmap (ln1 before the average and ln2 after): timm has one",
            )
    elif not final_norm:
        kwargs["final_norm"] = False
    if backbone.get("pre_norm"):
        kwargs["pre_norm"] = True  # CLIP: a LayerNorm before the blocks, no patch-embedding bias (both)
    used = {"arch", "patch_size", "img_size", "drop_path_rate", "drop_rate", "out_type", "final_norm"}
    check_args(backbone, key, report, used | {"pre_norm", "frozen_stages"}, VIT_SAME, name)
    if backbone.get("out_type", "cls_token") not in ("cls_token", "avg_featmap"):
        report.skip(f"{key}.out_type", f"{backbone['out_type']!r} has no timm global_pool")
    return TimmModel(name, kwargs, "vit")


@handles("DeiT3")
def _deit3(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {"s": "small", "small": "small", "m": "medium", "medium": "medium", "b": "base", "base": "base"}
    sizes |= {"l": "large", "large": "large", "h": "huge", "huge": "huge"}
    arch = arch_name(backbone, "base", sizes)
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    name, kwargs = sized(f"deit3_{arch}_patch{patch}", img)
    kwargs |= drop_path(backbone) | dropout(backbone)
    kwargs["init_values"] = float(backbone.get("layer_scale_init_value", 1e-4))
    used = {"arch", "patch_size", "img_size", "drop_path_rate", "drop_rate", "layer_scale_init_value"}
    check_args(backbone, key, report, used, {**VIT_SAME, "use_layer_scale": True}, name)
    report.skip(
        key,
        "MMPretrain's DeiT3 layer feeds its FFN through ln1 (ln2 is never used: DeiT3TransformerEncoderLayer."
        "forward); timm's deit3, like the paper, through norm2",
    )
    return TimmModel(name, kwargs, "vit")


EVA_ARCHS = {"eva-g": "giant", "eva-giant": "giant", "l": "large", "large": "large"}
"""BEiTViT archs that, with absolute position embeddings and no layer scale, are timm's EVA."""


@handles("BEiTViT")
def _beit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    arch = str(backbone.get("arch", "base")).lower()
    if arch in EVA_ARCHS and backbone.get("use_abs_pos_emb") and not backbone.get("layer_scale_init_value"):
        return _eva(backbone, key, report, EVA_ARCHS[arch])
    arch = arch_name(backbone, "base", {"b": "base", "base": "base", "l": "large", "large": "large"})
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    name, kwargs = sized(f"beit_{arch}_patch{patch}", img)
    kwargs |= drop_path(backbone) | dropout(backbone)
    kwargs |= {
        "use_abs_pos_emb": bool(backbone.get("use_abs_pos_emb", False)),
        "use_rel_pos_bias": bool(backbone.get("use_rel_pos_bias", False)),
        "use_shared_rel_pos_bias": bool(backbone.get("use_shared_rel_pos_bias", True)),
        "init_values": float(backbone.get("layer_scale_init_value", 0.1)),
    }
    if backbone.get("out_type", "avg_featmap") != "avg_featmap":
        report.skip(f"{key}.out_type", f"{backbone['out_type']!r}: timm's BEiT pools the average")
    used = {"arch", "patch_size", "img_size", "drop_path_rate", "drop_rate", "use_abs_pos_emb"}
    used |= {"use_rel_pos_bias", "use_shared_rel_pos_bias", "layer_scale_init_value", "out_type"}
    check_args(backbone, key, report, used, VIT_SAME, name)
    return TimmModel(name, kwargs, "beit")


def _eva(backbone: dict[str, Any], key: str, report: Report, size: str) -> TimmModel:
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    name, kwargs = sized(f"eva_{size}_patch{patch}", img)
    kwargs |= drop_path(backbone) | dropout(backbone)
    if backbone.get("out_type", "avg_featmap") != "avg_featmap":
        report.skip(f"{key}.out_type", f"{backbone['out_type']!r}: timm's EVA pools the average")
    used = {"arch", "patch_size", "img_size", "drop_path_rate", "drop_rate", "use_abs_pos_emb", "out_type"}
    used |= {"layer_scale_init_value"}
    same = {**VIT_SAME, "use_rel_pos_bias": False, "use_shared_rel_pos_bias": False}
    same |= {"layer_cfgs": {"bias": True} if size == "large" else {}}
    check_args(backbone, key, report, used, same, name)
    return TimmModel(name, kwargs, "beit")


@handles("ViTEVA02")
def _eva02(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {"t": "tiny", "ti": "tiny", "tiny": "tiny", "s": "small", "small": "small"}
    sizes |= {"b": "base", "base": "base", "l": "large", "large": "large"}
    size = arch_name(backbone, "tiny", sizes)
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    name, kwargs = sized(f"eva02_{size}_patch{patch}", img)
    kwargs |= drop_path(backbone) | dropout(backbone)
    if backbone.get("proj_drop_rate"):
        kwargs["proj_drop_rate"] = float(backbone["proj_drop_rate"])
    sub_ln = size in ("base", "large")  # timm's eva02 base and large normalize inside the MLP
    same = {**VIT_SAME, "sub_ln": sub_ln, "final_norm": False, "out_type": "avg_featmap"}
    same |= {"norm_cfg": {"type": "LN"}, "attn_drop_rate": 0.0}
    used = {"arch", "patch_size", "img_size", "drop_path_rate", "drop_rate", "proj_drop_rate"}
    check_args(backbone, key, report, used, same, name)
    return TimmModel(name, kwargs, "eva02")


XCIT_SIZES = {(128, 12): "nano_12", (192, 12): "tiny_12", (384, 12): "small_12", (192, 24): "tiny_24"}
XCIT_SIZES |= {(384, 24): "small_24", (512, 24): "medium_24", (768, 24): "large_24"}
XCIT_HEADS = {"nano_12": 4, "tiny_12": 4, "small_12": 8, "tiny_24": 4, "small_24": 8, "medium_24": 8}
XCIT_HEADS |= {"large_24": 16}


@handles("XCiT")
def _xcit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    dims, depth = backbone.get("embed_dims", 768), backbone.get("depth", 12)
    size = XCIT_SIZES.get((dims, depth))
    if size is None:
        raise NoTimmModel(f"XCiT with embed_dims={dims!r}, depth={depth!r} has no timm equivalent")
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    name = f"xcit_{size}_p{patch}_{img}"
    require(name)
    kwargs: dict[str, Any] = drop_path(backbone) | dropout(backbone)
    eta = float(backbone.get("layer_scale_init_value", 1.0))
    if eta != (1.0 if depth == 12 else 1e-5):
        kwargs["eta"] = eta
    tokens_norm = bool(backbone.get("tokens_norm", False))
    if tokens_norm != (size != "nano_12"):
        kwargs["tokens_norm"] = tokens_norm
    same = {"in_channels": 3, "cls_attn_layers": 2, "num_heads": XCIT_HEADS[size], "mlp_ratio": 4}
    same |= {"qkv_bias": True, "attn_drop_rate": 0.0, "use_pos_embed": True, "out_type": "cls_token"}
    same |= {"out_indices": (-1,), "final_norm": True, "frozen_stages": -1, "bn_norm_cfg": {"type": "BN"}}
    same |= {"norm_cfg": {"type": "LN", "eps": 1e-6}, "act_cfg": {"type": "GELU"}}
    used = {"embed_dims", "depth", "patch_size", "img_size", "drop_path_rate", "drop_rate"}
    check_args(backbone, key, report, used | {"layer_scale_init_value", "tokens_norm"}, same, name)
    return TimmModel(name, kwargs, "xcit")


@handles("TNT")
def _tnt(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    arch = arch_name(backbone, "b", {"s": "s", "small": "s", "b": "b", "base": "b"})
    # MMPretrain's TNT is the original (timm's legacy layout: a per-pixel norm before the projection, which
    # has a bias); timm has TNT-S in that layout by name, TNT-B with legacy=True
    name = "tnt_s_legacy_patch16_224" if arch == "s" else "tnt_b_patch16_224"
    kwargs: dict[str, Any] = {} if arch == "s" else {"legacy": True}
    same = {"img_size": 224, "patch_size": 16, "in_channels": 3, "ffn_ratio": 4, "qkv_bias": False}
    same |= {"drop_rate": 0.0, "attn_drop_rate": 0.0, "act_cfg": {"type": "GELU"}, "norm_cfg": {"type": "LN"}}
    same |= {"first_stride": 4, "num_fcs": 2}
    check_args(backbone, key, report, {"arch", "drop_path_rate"}, same, name)
    return TimmModel(name, kwargs | drop_path(backbone), "tnt")


@handles("MlpMixer")
def _mlp_mixer(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    arch = arch_name(backbone, "base", {a: a[0] for a in ("s", "small", "b", "base", "l", "large")})
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    name = f"mixer_{arch}{patch}_{img}"
    require(name)
    same = {"out_indices": -1, "norm_cfg": {"type": "LN"}, "act_cfg": {"type": "GELU"}, "patch_cfg": {}}
    same |= {"layer_cfgs": {}}
    used = {"arch", "patch_size", "img_size", "drop_path_rate", "drop_rate"}
    check_args(backbone, key, report, used, same, name)
    kwargs: dict[str, Any] = drop_path(backbone)
    if backbone.get("drop_rate"):  # in each token- and channel-mixing MLP (timm's proj_drop_rate)
        kwargs["proj_drop_rate"] = float(backbone["drop_rate"])
    return TimmModel(name, kwargs, "mlp_mixer")
