"""MMPretrain backbones -> timm models: the name, its arguments, and the parameter-name family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainer.port.report import Report


@dataclass
class TimmModel:
    """The timm model a backbone becomes; `family` names its parameter-name table (trainer.port.names)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    family: str | None = None


class NoTimmModel(Exception):
    """The backbone (or this configuration of it) has no timm equivalent."""


Handler = Callable[[dict[str, Any], str, Report], TimmModel]
HANDLERS: dict[str, Handler] = {}


def handles(*types: str) -> Callable[[Handler], Handler]:
    """Register a handler for these MMPretrain backbone types."""

    def add(fn: Handler) -> Handler:
        for t in types:
            HANDLERS[t] = fn
        return fn

    return add


def map_backbone(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    """The timm model of `backbone`; NoTimmModel where there is none. Arguments that do not carry over
    are reported under `key`."""
    kind = backbone.get("type")
    handler = HANDLERS.get(kind)
    if handler is None:
        raise NoTimmModel(f"backbone type {kind!r} has no timm equivalent in the port's table")
    return handler(backbone, key, report)


SHARED = {"init_cfg", "type", "with_cp"}
"""Arguments every handler leaves to the caller (init_cfg, gradient checkpointing)."""


def check_args(
    backbone: dict[str, Any], key: str, report: Report, used: set[str], same: dict[str, Any], model: str
) -> None:
    """Report every argument that is neither used nor at a value that behaves like `model` in timm."""
    for arg, value in backbone.items():
        if arg in used or arg in SHARED:
            continue
        if arg in same and _equal(value, same[arg]):
            continue
        report.skip(f"{key}.{arg}", f"{value!r} is not carried over to timm's {model}")
    if backbone.get("with_cp"):
        report.note(f"{key}.with_cp", "gradient checkpointing is not a recipe setting (it saves memory only)")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _arch(backbone: dict[str, Any], default: str, aliases: dict[str, str]) -> str:
    arch = backbone.get("arch", default)
    if not isinstance(arch, str):
        raise NoTimmModel(f"a custom arch {arch!r} (a dict) has no timm model name")
    arch_name = aliases.get(arch.lower())
    if arch_name is None:
        raise NoTimmModel(f"arch {arch!r} has no timm equivalent in the port's table")
    return arch_name


RESNET_SAME = {
    "in_channels": 3,
    "stem_channels": 64,
    "base_channels": 64,
    "num_stages": 4,
    "strides": (1, 2, 2, 2),
    "dilations": (1, 1, 1, 1),
    "out_indices": (3,),
    "style": "pytorch",
    "frozen_stages": -1,
    "conv_cfg": None,
    "norm_cfg": {"type": "BN", "requires_grad": True},
    "norm_eval": False,
    "zero_init_residual": True,
    "drop_path_rate": 0.0,
}


@handles("ResNet", "ResNetV1c", "ResNetV1d", "ResNeXt", "SEResNet", "SEResNeXt")
def _resnet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    kind = backbone["type"]
    depth = backbone.get("depth")
    deep = {"ResNetV1c": True, "ResNetV1d": True}.get(kind, False)
    avg = kind == "ResNetV1d"
    same = {**RESNET_SAME, "deep_stem": deep, "avg_down": avg, "se_ratio": 16}
    if kind in ("ResNeXt", "SEResNeXt"):
        groups, width = backbone.get("groups", 32), backbone.get("width_per_group", 4)
        prefix = "se" if kind == "SEResNeXt" else ""
        name = f"{prefix}resnext{depth}_{groups}x{width}d"
        used = {"depth", "groups", "width_per_group"}
    elif kind == "ResNet" and backbone.get("base_channels") == 128 and backbone.get("expansion") == 2:
        prefix, name = "", f"wide_resnet{depth}_2"  # WRN-50-2: twice the bottleneck width
        used = {"depth", "base_channels", "expansion"}
    else:
        prefix = "se" if kind == "SEResNet" else ""
        suffix = {"ResNetV1c": "c", "ResNetV1d": "d"}.get(kind, "")
        name = f"{prefix}resnet{depth}{suffix}"
        used = {"depth"}
    _require(name)
    check_args(backbone, key, report, used, same, name)
    family = "resnet" if not prefix and not name.startswith("wide") else None
    return TimmModel(name, {}, family)


@handles("RegNet")
def _regnet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {"400mf": "004", "800mf": "008", "1.6gf": "016", "3.2gf": "032", "4.0gf": "040"}
    sizes |= {"6.4gf": "064", "8.0gf": "080", "12gf": "120"}
    arch = backbone.get("arch")
    if not isinstance(arch, str) or not arch.startswith("regnetx_") or arch[8:] not in sizes:
        raise NoTimmModel(f"RegNet arch {arch!r} has no timm equivalent in the port's table")
    name = f"regnetx_{sizes[arch[8:]]}"
    same = {k: v for k, v in RESNET_SAME.items() if k not in ("stem_channels", "base_channels", "num_stages")}
    same |= {"stem_channels": 32, "base_channels": 32, "strides": (2, 2, 2, 2), "deep_stem": False}
    same |= {"avg_down": False}
    check_args(backbone, key, report, {"arch"}, same, name)
    return TimmModel(name)


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
    return TimmModel(name)


@handles("MobileNetV3")
def _mobilenet_v3(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = f"mobilenetv3_{_arch(backbone, 'small', {'small': 'small', 'large': 'large'})}_100"
    norm = backbone.get("norm_cfg", {"type": "BN", "eps": 0.001, "momentum": 0.01})
    if not isinstance(norm, dict) or norm.get("type") != "BN":
        raise NoTimmModel(f"MobileNetV3 with norm_cfg {norm!r} has no timm equivalent")
    kwargs = {"bn_eps": float(norm.get("eps", 1e-5)), "bn_momentum": float(norm.get("momentum", 0.1))}
    same = {"conv_cfg": None, "out_indices": None, "frozen_stages": -1, "norm_eval": False}
    check_args(backbone, key, report, {"arch", "norm_cfg"}, same, name)
    return TimmModel(name, kwargs)


@handles("EfficientNet")
def _efficientnet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    arch = _arch(backbone, "b0", {a: a for a in ("b0 b1 b2 b3 b4 b5 b6 b7 b8 l2 es em el".split())})
    name = f"tf_efficientnet_{arch}"
    same = {"out_indices": (6,), "frozen_stages": 0, "norm_eval": False, "drop_path_rate": 0.0}
    same |= {"conv_cfg": {"type": "Conv2dAdaptivePadding"}, "norm_cfg": {"type": "BN", "eps": 1e-3}}
    same |= {"act_cfg": {"type": "Swish"}}
    check_args(backbone, key, report, {"arch", "drop_path_rate"}, same, name)
    return TimmModel(name, {"drop_path_rate": float(backbone.get("drop_path_rate", 0.0))})


@handles("EfficientNetV2")
def _efficientnet_v2(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {"s": "s", "small": "s", "m": "m", "medium": "m", "l": "l", "large": "l", "xl": "xl"}
    sizes |= {"b0": "b0", "b1": "b1", "b2": "b2", "b3": "b3"}
    name = f"tf_efficientnetv2_{_arch(backbone, 's', sizes)}"
    same = {"out_indices": (-1,), "frozen_stages": 0, "norm_eval": False, "drop_path_rate": 0.0}
    same |= {"in_channels": 3, "drop_connect_rate": 0.0}
    check_args(backbone, key, report, {"arch", "drop_path_rate"}, same, name)
    return TimmModel(name, {"drop_path_rate": float(backbone.get("drop_path_rate", 0.0))})


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
    stem = _arch(backbone, "base", sizes)
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    distilled = "_distilled" if backbone["type"] == "DistilledVisionTransformer" else ""
    if distilled and not stem.startswith("deit"):
        raise NoTimmModel("DistilledVisionTransformer with a non-DeiT arch has no timm equivalent")
    name, kwargs = _sized(f"{stem}{distilled}_patch{patch}", img)
    kwargs["drop_path_rate"] = float(backbone.get("drop_path_rate", 0.0))
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
    check_args(
        backbone,
        key,
        report,
        {"arch", "patch_size", "img_size", "drop_path_rate", "out_type", "final_norm", "pre_norm"},
        VIT_SAME,
        name,
    )
    if backbone.get("out_type", "cls_token") not in ("cls_token", "avg_featmap"):
        report.skip(f"{key}.out_type", f"{backbone['out_type']!r} has no timm global_pool")
    return TimmModel(name, kwargs, "vit")


@handles("DeiT3")
def _deit3(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {"s": "small", "small": "small", "m": "medium", "medium": "medium", "b": "base", "base": "base"}
    sizes |= {"l": "large", "large": "large", "h": "huge", "huge": "huge"}
    arch = _arch(backbone, "base", sizes)
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    name, kwargs = _sized(f"deit3_{arch}_patch{patch}", img)
    kwargs["drop_path_rate"] = float(backbone.get("drop_path_rate", 0.0))
    kwargs["init_values"] = float(backbone.get("layer_scale_init_value", 1e-4))
    used = {"arch", "patch_size", "img_size", "drop_path_rate", "layer_scale_init_value"}
    check_args(backbone, key, report, used, {**VIT_SAME, "use_layer_scale": True}, name)
    report.skip(
        key,
        "MMPretrain's DeiT3 layer feeds its FFN through ln1 (ln2 is never used: DeiT3TransformerEncoderLayer."
        "forward); timm's deit3, like the paper, through norm2",
    )
    return TimmModel(name, kwargs, "vit")


@handles("BEiTViT")
def _beit(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    arch = _arch(backbone, "base", {"b": "base", "base": "base", "l": "large", "large": "large"})
    patch, img = backbone.get("patch_size", 16), backbone.get("img_size", 224)
    name, kwargs = _sized(f"beit_{arch}_patch{patch}", img)
    kwargs |= {
        "drop_path_rate": float(backbone.get("drop_path_rate", 0.0)),
        "use_abs_pos_emb": bool(backbone.get("use_abs_pos_emb", False)),
        "use_rel_pos_bias": bool(backbone.get("use_rel_pos_bias", False)),
        "use_shared_rel_pos_bias": bool(backbone.get("use_shared_rel_pos_bias", True)),
        "init_values": float(backbone.get("layer_scale_init_value", 0.1)),
    }
    if backbone.get("out_type", "avg_featmap") != "avg_featmap":
        report.skip(f"{key}.out_type", f"{backbone['out_type']!r}: timm's BEiT pools the average")
    used = {"arch", "patch_size", "img_size", "drop_path_rate", "use_abs_pos_emb", "use_rel_pos_bias"}
    used |= {"use_shared_rel_pos_bias", "layer_scale_init_value", "out_type"}
    check_args(backbone, key, report, used, VIT_SAME, name)
    return TimmModel(name, kwargs)


@handles("SwinTransformer")
def _swin(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {"t": "tiny", "tiny": "tiny", "s": "small", "small": "small", "b": "base", "base": "base"}
    sizes |= {"l": "large", "large": "large"}
    arch = _arch(backbone, "tiny", sizes)
    img, window = backbone.get("img_size", 224), backbone.get("window_size", 7)
    name = f"swin_{arch}_patch4_window{window}_{img}"
    _require(name)
    same = {
        "patch_size": 4,
        "in_channels": 3,
        "drop_rate": 0.0,
        "out_indices": (3,),
        "use_abs_pos_embed": False,
    }
    same |= {"interpolate_mode": "bicubic", "frozen_stages": -1, "norm_eval": False, "pad_small_map": False}
    same |= {"norm_cfg": {"type": "LN"}, "stage_cfgs": {}, "patch_cfg": {}, "out_after_downsample": False}
    check_args(backbone, key, report, {"arch", "img_size", "window_size", "drop_path_rate"}, same, name)
    return TimmModel(name, {"drop_path_rate": float(backbone.get("drop_path_rate", 0.1))}, "swin")


@handles("SwinTransformerV2")
def _swin_v2(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {"t": "tiny", "tiny": "tiny", "s": "small", "small": "small", "b": "base", "base": "base"}
    sizes |= {"l": "large", "large": "large"}
    arch = _arch(backbone, "tiny", sizes)
    img, window = backbone.get("img_size", 256), backbone.get("window_size", 8)
    windows = set(window) if isinstance(window, (list, tuple)) else {window}
    if len(windows) != 1:
        raise NoTimmModel(f"SwinTransformerV2 window_size {window!r} varies by stage; timm's has one")
    (window,) = windows
    pretrained = backbone.get("pretrained_window_sizes", (0, 0, 0, 0))
    name = f"swinv2_{arch}_window{window}_{img}"
    kwargs: dict[str, Any] = {"drop_path_rate": float(backbone.get("drop_path_rate", 0.1))}
    import timm

    if not timm.is_model(name):
        kwargs |= {"img_size": img, "window_size": window}
        name = next(iter(timm.list_models(f"swinv2_{arch}_window*")), name)
    _require(name)
    if any(pretrained):
        kwargs["pretrained_window_sizes"] = list(pretrained)
    same = {
        "patch_size": 4,
        "in_channels": 3,
        "drop_rate": 0.0,
        "out_indices": (3,),
        "use_abs_pos_embed": False,
    }
    same |= {"interpolate_mode": "bicubic", "frozen_stages": -1, "norm_eval": False, "pad_small_map": False}
    same |= {"norm_cfg": {"type": "LN"}, "stage_cfgs": {}, "patch_cfg": {}}
    used = {"arch", "img_size", "window_size", "drop_path_rate", "pretrained_window_sizes"}
    check_args(backbone, key, report, used, same, name)
    return TimmModel(name, kwargs)


@handles("ConvNeXt")
def _convnext(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    sizes = {a: a for a in "atto femto pico nano tiny small base large xlarge huge".split()}
    sizes |= {"t": "tiny", "s": "small", "b": "base", "l": "large"}
    arch = _arch(backbone, "tiny", sizes)
    v2 = bool(backbone.get("use_grn", False))
    name = f"convnext{'v2' if v2 else ''}_{arch}"
    _require(name)
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


@handles("RepVGG")
def _repvgg(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    archs = {a.lower(): a.lower() for a in "A0 A1 A2 B0 B1 B1g4 B2 B2g4 B3 B3g4 D2se".split()}
    name = f"repvgg_{_arch(backbone, 'A0', archs)}"
    same = {"in_channels": 3, "base_channels": 64, "out_indices": (3,), "strides": (2, 2, 2, 2)}
    same |= {"dilations": (1, 1, 1, 1), "frozen_stages": -1, "conv_cfg": None, "norm_cfg": {"type": "BN"}}
    same |= {"act_cfg": {"type": "ReLU"}, "deploy": False, "norm_eval": False, "add_ppf": False}
    check_args(backbone, key, report, {"arch"}, same, name)
    return TimmModel(name)


@handles("Res2Net")
def _res2net(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    depth, scales, width = backbone.get("depth"), backbone.get("scales", 4), backbone.get("base_width", 26)
    name = f"res2net{depth}_{width}w_{scales}s"
    _require(name)
    same = {**RESNET_SAME, "deep_stem": True, "avg_down": True}
    if backbone.get("deep_stem", True) or backbone.get("avg_down", True):
        raise NoTimmModel("Res2Net with deep_stem/avg_down (MMPretrain's default) has no timm equivalent")
    check_args(backbone, key, report, {"depth", "scales", "base_width", "deep_stem", "avg_down"}, same, name)
    return TimmModel(name)


@handles("HRNet")
def _hrnet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    archs = {f"w{w}": f"w{w}" for w in (18, 30, 32, 40, 44, 48, 64)}
    name = f"hrnet_{_arch(backbone, 'w32', archs)}"
    same = {"in_channels": 3, "norm_eval": False, "zero_init_residual": False, "multiscale_output": True}
    same |= {"conv_cfg": None, "norm_cfg": {"type": "BN"}}
    check_args(backbone, key, report, {"arch"}, same, name)
    return TimmModel(name)


def _sized(stem: str, img: int) -> tuple[str, dict[str, Any]]:
    """`{stem}_{img}` where timm has it, else `{stem}_224` with img_size (position embeddings resized)."""
    import timm

    if timm.is_model(f"{stem}_{img}"):
        return f"{stem}_{img}", {}
    _require(f"{stem}_224")
    return f"{stem}_224", {"img_size": img}


def _require(name: str) -> None:
    import timm

    if not timm.is_model(name):
        raise NoTimmModel(f"timm has no model {name!r}")
