"""Mobile and re-parameterizable networks: MobileNet V2/V3, EfficientNet V1/V2, RepVGG, MobileOne,
MobileViT, EfficientFormer, LeViT, EdgeNeXt, TinyViT, ConvMixer."""

from __future__ import annotations

from typing import Any

from trainer.port.models import (
    NoTimmModel,
    TimmModel,
    arch_name,
    check_args,
    drop_path,
    equal,
    handles,
    report_deploy,
    sized,
)
from trainer.port.report import Report


@handles("MobileNetV2")
def _mobilenet_v2(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    widths = {1.0: "100", 1.4: "140", 0.5: "050"}
    width = backbone.get("widen_factor", 1.0)
    if width not in widths:
        raise NoTimmModel(f"MobileNetV2 widen_factor {width!r} has no timm equivalent in the port's table")
    name = f"mobilenetv2_{widths[width]}"
    same = {"out_indices": (7,), "frozen_stages": -1, "norm_eval": False, "conv_cfg": None}
    same |= {"norm_cfg": {"type": "BN"}, "act_cfg": {"type": "ReLU6"}}
    check_args(backbone, key, report, {"widen_factor"}, same, name)
    return TimmModel(name, {}, "mobilenetv2")


@handles("MobileNetV3")
def _mobilenet_v3(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    archs = {"small": "small_100", "large": "large_100", "small_050": "small_050", "small_075": "small_075"}
    name = f"mobilenetv3_{arch_name(backbone, 'small', archs)}"
    norm = backbone.get("norm_cfg", {"type": "BN", "eps": 0.001, "momentum": 0.01})
    if not isinstance(norm, dict) or norm.get("type") != "BN":
        raise NoTimmModel(f"MobileNetV3 with norm_cfg {norm!r} has no timm equivalent")
    kwargs = {"bn_eps": float(norm.get("eps", 1e-5)), "bn_momentum": float(norm.get("momentum", 0.1))}
    same = {"conv_cfg": None, "out_indices": None, "frozen_stages": -1, "norm_eval": False}
    check_args(backbone, key, report, {"arch", "norm_cfg"}, same, name)
    return TimmModel(name, kwargs, "mobilenetv3")


@handles("EfficientNet")
def _efficientnet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    arch = arch_name(backbone, "b0", {a: a for a in ("b0 b1 b2 b3 b4 b5 b6 b7 b8 l2 es em el".split())})
    name = f"tf_efficientnet_{arch}"
    same = {"out_indices": (6,), "frozen_stages": 0, "norm_eval": False, "drop_path_rate": 0.0}
    same |= {"conv_cfg": {"type": "Conv2dAdaptivePadding"}, "norm_cfg": {"type": "BN", "eps": 1e-3}}
    same |= {"act_cfg": {"type": "Swish"}}
    check_args(backbone, key, report, {"arch", "drop_path_rate"}, same, name)
    return TimmModel(name, drop_path(backbone), "efficientnet")


@handles("EfficientNetV2")
def _efficientnet_v2(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {"s": "s", "small": "s", "m": "m", "medium": "m", "l": "l", "large": "l", "xl": "xl"}
    sizes |= {"b0": "b0", "b1": "b1", "b2": "b2", "b3": "b3"}
    name = f"tf_efficientnetv2_{arch_name(backbone, 's', sizes)}"
    same = {"out_indices": (-1,), "frozen_stages": 0, "norm_eval": False, "drop_path_rate": 0.0}
    same |= {"in_channels": 3, "drop_connect_rate": 0.0}
    check_args(backbone, key, report, {"arch", "drop_path_rate"}, same, name)
    return TimmModel(name, drop_path(backbone), "efficientnetv2")


@handles("RepVGG")
def _repvgg(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    archs = {a.lower(): a.lower() for a in "A0 A1 A2 B0 B1 B1g4 B2 B2g4 B3 B3g4 D2se".split()}
    name = f"repvgg_{arch_name(backbone, 'A0', archs)}"
    same = {"in_channels": 3, "base_channels": 64, "out_indices": (3,), "strides": (2, 2, 2, 2)}
    same |= {"dilations": (1, 1, 1, 1), "frozen_stages": -1, "conv_cfg": None, "norm_cfg": {"type": "BN"}}
    same |= {"act_cfg": {"type": "ReLU"}, "norm_eval": False, "add_ppf": False}
    report_deploy(backbone, key, report, name)
    check_args(backbone, key, report, {"arch", "deploy"}, same, name)
    return TimmModel(name, {}, "repvgg")


@handles("MobileOne")
def _mobileone(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = f"mobileone_{arch_name(backbone, 's0', {f's{i}': f's{i}' for i in range(5)})}"
    same = {"in_channels": 3, "out_indices": (3,), "frozen_stages": -1, "conv_cfg": None}
    same |= {"norm_cfg": {"type": "BN"}, "act_cfg": {"type": "ReLU"}, "se_cfg": {"ratio": 16}}
    same |= {"norm_eval": False}
    report_deploy(backbone, key, report, name)
    check_args(backbone, key, report, {"arch", "deploy"}, same, name)
    return TimmModel(name, {}, "mobileone")


@handles("MobileViT")
def _mobilevit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = f"mobilevit_{arch_name(backbone, 'small', {'small': 's', 'x_small': 'xs', 'xx_small': 'xxs'})}"
    same = {"in_channels": 3, "stem_channels": 16, "last_exp_factor": 4, "out_indices": (4,)}
    same |= {"frozen_stages": -1, "conv_cfg": None, "norm_cfg": {"type": "BN"}, "act_cfg": {"type": "Swish"}}
    check_args(backbone, key, report, {"arch"}, same, name)
    return TimmModel(name, {}, "mobilevit")


@handles("EfficientFormer")
def _efficientformer(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = f"efficientformer_{arch_name(backbone, 'l1', {a: a for a in ('l1', 'l3', 'l7')})}"
    same = {"in_channels": 3, "pool_size": 3, "mlp_ratios": 4, "reshape_last_feat": False}
    same |= {"out_indices": -1, "frozen_stages": -1, "act_cfg": {"type": "GELU"}, "drop_rate": 0.0}
    same |= {"use_layer_scale": True}
    check_args(backbone, key, report, {"arch", "drop_path_rate"}, same, name)
    return TimmModel(name, drop_path(backbone), "efficientformer")


@handles("LeViT")
def _levit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = f"levit_{arch_name(backbone, '128', {a: a for a in ('128s', '128', '192', '256', '384')})}"
    same = {"img_size": 224, "patch_size": 16, "attn_ratio": 2, "mlp_ratio": 2, "act_cfg": {"type": "HSwish"}}
    same |= {"out_indices": -1}
    report_deploy(backbone, key, report, name)
    check_args(backbone, key, report, {"arch", "drop_path_rate", "deploy", "out_indices"}, same, name)
    return TimmModel(name, {"distilled": False, **drop_path(backbone)}, "levit")


@handles("EdgeNeXt")
def _edgenext(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    archs = {"xxsmall": "xx_small", "xsmall": "x_small", "small": "small", "base": "base"}
    arch = arch_name(backbone, "xxsmall", archs)
    name = f"edgenext_{arch}"
    kwargs: dict[str, Any] = drop_path(backbone)
    scale = backbone.get("layer_scale_init_value", 1e-6)
    if scale != 1e-6:
        kwargs["ls_init_value"] = float(scale)
    same = {"in_channels": 3, "global_blocks": (0, 1, 1, 1), "linear_pw_conv": True, "mlp_ratio": 4}
    same |= {"global_block_type": ("None", "SDTA", "SDTA", "SDTA"), "conv_kernel_sizes": (3, 5, 7, 9)}
    same |= {"use_pos_embd_csa": (False, True, False, False), "use_pos_embd_global": False}
    same |= {"d2_scales": (2, 2, 3, 4), "norm_cfg": {"type": "LN2d", "eps": 1e-6}, "out_indices": (3,)}
    same |= {"frozen_stages": 0, "gap_before_final_norm": True, "act_cfg": {"type": "GELU"}}
    check_args(backbone, key, report, {"arch", "drop_path_rate", "layer_scale_init_value"}, same, name)
    return TimmModel(name, kwargs, "edgenext")


TINYVIT_WINDOWS = {224: [7, 7, 14, 7], 384: [12, 12, 24, 12], 512: [16, 16, 32, 16]}
"""timm's tiny_vit_*_{size} window sizes per stage."""


@handles("TinyViT")
def _tinyvit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    arch = arch_name(backbone, "5m", {a: a for a in ("5m", "11m", "21m")})
    img = backbone.get("img_size", 224)
    img = img[0] if isinstance(img, (list, tuple)) and len(set(img)) == 1 else img
    if not isinstance(img, int):
        raise NoTimmModel(f"TinyViT img_size {backbone['img_size']!r} is not square")
    name, kwargs = sized(f"tiny_vit_{arch}", img)
    kwargs.pop("img_size", None)  # timm's TinyViT takes any size; only the windows are fixed
    windows = list(backbone.get("window_size", [7, 7, 14, 7]))
    if not equal(windows, TINYVIT_WINDOWS.get(int(name.rsplit("_", 1)[1]))):
        kwargs["window_sizes"] = windows
    kwargs |= drop_path(backbone, 0.1)
    same = {"in_channels": 3, "mlp_ratio": 4.0, "drop_rate": 0.0, "mbconv_expand_ratio": 4.0}
    same |= {"local_conv_size": 3, "layer_lr_decay": 1.0, "out_indices": (3,), "frozen_stages": 0}
    same |= {"gap_before_final_norm": True, "act_cfg": {"type": "GELU"}, "norm_cfg": {"type": "LN"}}
    same |= {"use_checkpoint": False}
    check_args(backbone, key, report, {"arch", "img_size", "window_size", "drop_path_rate"}, same, name)
    return TimmModel(name, kwargs, "tinyvit")


@handles("ConvMixer")
def _convmixer(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    archs = {"768/32": "768_32", "1024/20": "1024_20_ks9_p14", "1536/20": "1536_20"}
    arch = arch_name(backbone, "768/32", archs)
    name = f"convmixer_{arch}"
    act = "ReLU" if arch == "768_32" else "GELU"  # timm's convmixer_768_32 uses ReLU
    same = {"in_channels": 3, "norm_cfg": {"type": "BN"}, "act_cfg": {"type": act}, "out_indices": -1}
    same |= {"frozen_stages": 0}
    check_args(backbone, key, report, {"arch"}, same, name)
    return TimmModel(name, {}, "convmixer")
