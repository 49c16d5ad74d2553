"""Multi-stage (pyramid) transformers and ConvNets: Swin V1/V2, ConvNeXt V1/V2, Twins, MViTv2, DaViT,
PoolFormer."""

from __future__ import annotations

from typing import Any

from trainer.port.models import NoTimmModel, TimmModel, arch_name, check_args, drop_path, handles, require
from trainer.port.report import Report

SWIN_SIZES = {"t": "tiny", "tiny": "tiny", "s": "small", "small": "small", "b": "base", "base": "base"}
SWIN_SIZES |= {"l": "large", "large": "large"}
SWIN_SAME = {"patch_size": 4, "in_channels": 3, "drop_rate": 0.0, "out_indices": (3,)}
SWIN_SAME |= {"use_abs_pos_embed": False, "interpolate_mode": "bicubic", "frozen_stages": -1}
SWIN_SAME |= {"norm_eval": False, "norm_cfg": {"type": "LN"}, "patch_cfg": {}}


@handles("SwinTransformer")
def _swin(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    import timm

    arch = arch_name(backbone, "tiny", SWIN_SIZES)
    img, window = backbone.get("img_size", 224), _swin_window(backbone, key, report)
    name = f"swin_{arch}_patch4_window{window}_{img}"
    kwargs: dict[str, Any] = drop_path(backbone, 0.1)
    if not timm.is_model(name):
        name, kwargs = f"swin_{arch}_patch4_window7_224", {"img_size": img, "window_size": window, **kwargs}
    require(name)
    if backbone.get("pad_small_map"):
        kwargs["always_partition"] = True
        report.note(
            f"{key}.pad_small_map",
            "True -> always_partition = true: timm keeps the window and pads maps smaller than it too",
        )
    same = {**SWIN_SAME, "out_after_downsample": False}
    used = {"arch", "img_size", "window_size", "drop_path_rate", "stage_cfgs", "pad_small_map"}
    check_args(backbone, key, report, used, same, name)
    return TimmModel(name, kwargs, "swin")


def _swin_window(backbone: dict[str, Any], key: str, report: Report) -> int:
    """The window: `window_size`, or the one `stage_cfgs.block_cfgs.window_size` gives every stage."""
    stage_cfgs = backbone.get("stage_cfgs") or {}
    blocks = stage_cfgs.get("block_cfgs") if isinstance(stage_cfgs, dict) else None
    window = backbone.get("window_size", 7)
    if isinstance(blocks, dict) and isinstance(blocks.get("window_size"), int):
        window = blocks["window_size"]
        rest = {k: v for k, v in blocks.items() if k != "window_size"}
        others = {k: v for k, v in stage_cfgs.items() if k != "block_cfgs"}
        if rest or others:
            report.skip(f"{key}.stage_cfgs", f"{ {**others, 'block_cfgs': rest}!r} is not carried over")
    elif stage_cfgs:
        report.skip(f"{key}.stage_cfgs", f"{stage_cfgs!r} is not carried over")
    return window


@handles("SwinTransformerV2")
def _swin_v2(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    import timm

    arch = arch_name(backbone, "tiny", SWIN_SIZES)
    img, window = backbone.get("img_size", 256), backbone.get("window_size", 8)
    windows = list(window) if isinstance(window, (list, tuple)) else [window] * 4
    window = max(windows)
    resolutions = [img // 4 // 2**i for i in range(len(windows))]
    if any(min(window, r) != w for w, r in zip(windows, resolutions, strict=True)):
        raise NoTimmModel(
            f"SwinTransformerV2 window_size {windows!r} varies by stage; timm's has one (cut to maps smaller "
            "than it)"
        )
    pretrained = backbone.get("pretrained_window_sizes", (0, 0, 0, 0))
    name = f"swinv2_{arch}_window{window}_{img}"
    kwargs: dict[str, Any] = drop_path(backbone, 0.1)
    if not timm.is_model(name):
        kwargs |= {"img_size": img, "window_size": window}
        name = next(iter(timm.list_models(f"swinv2_{arch}_window*")), name)
    require(name)
    if any(pretrained):
        kwargs["pretrained_window_sizes"] = list(pretrained)
    used = {"arch", "img_size", "window_size", "drop_path_rate", "pretrained_window_sizes"}
    check_args(backbone, key, report, used, {**SWIN_SAME, "pad_small_map": False, "stage_cfgs": {}}, name)
    return TimmModel(name, kwargs, "swinv2")


@handles("ConvNeXt")
def _convnext(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {a: a for a in "atto femto pico nano tiny small base large xlarge huge".split()}
    sizes |= {"t": "tiny", "s": "small", "b": "base", "l": "large"}
    arch = arch_name(backbone, "tiny", sizes)
    v2 = bool(backbone.get("use_grn", False))
    name = f"convnext{'v2' if v2 else ''}_{arch}"
    require(name)
    scale = backbone.get("layer_scale_init_value", 1e-6)
    kwargs: dict[str, Any] = {"drop_path_rate": float(backbone.get("drop_path_rate", 0.0))}
    linear = backbone.get("linear_pw_conv", True)
    if arch in ("atto", "femto", "pico", "nano") or not linear:  # timm's small ones default to 1x1 convs
        kwargs["conv_mlp"] = not linear
    if v2 and scale:
        report.skip(f"{key}.layer_scale_init_value", f"{scale!r}: timm's ConvNeXt V2 has no layer scale")
    if not v2 and scale:
        kwargs["ls_init_value"] = float(scale)
    elif not v2:  # timm's "no layer scale" is None, which TOML cannot write
        report.skip(
            f"{key}.layer_scale_init_value", "0 (no layer scale) cannot be written for timm's ConvNeXt"
        )
    same = {"in_channels": 3, "stem_patch_size": 4, "norm_cfg": {"type": "LN2d", "eps": 1e-6}}
    same |= {"act_cfg": {"type": "GELU"}, "linear_pw_conv": True, "out_indices": -1, "frozen_stages": 0}
    same |= {"gap_before_final_norm": True}
    used = {"arch", "use_grn", "layer_scale_init_value", "drop_path_rate", "linear_pw_conv"}
    check_args(backbone, key, report, used, same, name)
    return TimmModel(name, kwargs, "convnext")


@handles("PCPVT", "SVT")
def _twins(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    kind = backbone["type"]
    size = arch_name(backbone, "base", {a: b for a, b in SWIN_SIZES.items() if b != "tiny"})
    name = f"twins_{kind.lower()}_{size}"
    norm = {"type": "LN", "eps": 1e-6}
    if backbone.get("norm_cfg") == {"type": "LN"}:
        norm = {"type": "LN"}
        report.note(f"{key}.norm_cfg", "LayerNorm eps 1e-5; timm's Twins uses 1e-6")
    same = {"in_channels": 3, "out_indices": (3,), "qkv_bias": True, "drop_rate": 0.0, "attn_drop_rate": 0.0}
    same |= {"norm_cfg": norm, "norm_after_stage": (False, False, False, True)}
    check_args(backbone, key, report, {"arch", "drop_path_rate"}, same, name)
    return TimmModel(name, drop_path(backbone), "twins")


@handles("MViT")
def _mvit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    size = arch_name(backbone, "base", {a: a for a in ("tiny", "small", "base", "large")})
    name = f"mvitv2_{size}"
    kwargs: dict[str, Any] = drop_path(backbone)
    expand = bool(backbone.get("dim_mul_in_attention", True))
    if expand != (size != "large"):
        kwargs["expand_attn"] = expand
    same = {"img_size": 224, "in_channels": 3, "out_scales": -1, "use_abs_pos_embed": False}
    same |= {"interpolate_mode": "bicubic", "pool_kernel": (3, 3), "dim_mul": 2, "head_mul": 2}
    same |= {"adaptive_kv_stride": 4, "rel_pos_spatial": True, "residual_pooling": True}
    same |= {"rel_pos_zero_init": False, "mlp_ratio": 4.0, "qkv_bias": True}
    same |= {"norm_cfg": {"type": "LN", "eps": 1e-6}}
    same |= {"patch_cfg": {"kernel_size": 7, "stride": 4, "padding": 3}}
    check_args(backbone, key, report, {"arch", "drop_path_rate", "dim_mul_in_attention"}, same, name)
    return TimmModel(name, kwargs, "mvit")


@handles("DaViT")
def _davit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = f"davit_{arch_name(backbone, 't', SWIN_SIZES)}"
    same = {"patch_size": 4, "in_channels": 3, "window_size": 7, "ffn_ratio": 4.0, "qkv_bias": True}
    same |= {"out_after_downsample": False, "pad_small_map": False, "norm_cfg": {"type": "LN"}}
    same |= {"stage_cfgs": {}, "frozen_stages": -1, "norm_eval": False, "out_indices": (3,)}
    check_args(backbone, key, report, {"arch", "drop_path_rate"}, same, name)
    report.skip(
        key,
        "MMPretrain's DaViT pads its 7x7 stride-4 stem 'same' (1 pixel before, 2 after at 224), normalizes "
        f"each token before pooling; timm's {name} pads 3 on each side and normalizes after pooling",
    )
    return TimmModel(name, drop_path(backbone, 0.1), "davit")


@handles("PoolFormer")
def _poolformer(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = f"poolformer_{arch_name(backbone, 's12', {a: a for a in ('s12', 's24', 's36', 'm36', 'm48')})}"
    kwargs: dict[str, Any] = drop_path(backbone)
    if backbone.get("drop_rate"):  # in each MLP (timm's proj_drop_rate)
        kwargs["proj_drop_rate"] = float(backbone["drop_rate"])
    same = {"pool_size": 3, "norm_cfg": {"type": "GN", "num_groups": 1}, "act_cfg": {"type": "GELU"}}
    same |= {"in_patch_size": 7, "in_stride": 4, "in_pad": 2, "down_patch_size": 3, "down_stride": 2}
    same |= {"down_pad": 1, "out_indices": -1, "frozen_stages": 0}
    check_args(backbone, key, report, {"arch", "drop_path_rate", "drop_rate"}, same, name)
    report.skip(
        key,
        "MMPretrain's PoolFormer normalizes the last feature map (GroupNorm, one group), then pools; timm's "
        f"{name} pools and then normalizes (LayerNorm2d, eps 1e-6)",
    )
    return TimmModel(name, kwargs, "poolformer")
