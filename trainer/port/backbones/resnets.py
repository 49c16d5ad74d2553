"""Residual and plain convolutional networks: ResNet and its variants, ResNeSt, CSPNet, RegNet, Res2Net,
DenseNet, VGG, Inception V3, HRNet."""

from __future__ import annotations

from typing import Any

from trainer.port.models import NoTimmModel, TimmModel, arch_name, check_args, drop_path, handles, require
from trainer.port.report import Report

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
RESNEXT_152 = [3, 8, 36, 3]
"""MMPretrain's ResNeXt-152 blocks; timm has no resnext152, so resnext101 with these layers."""


@handles("ResNet", "ResNetV1c", "ResNetV1d", "ResNeXt", "SEResNet", "SEResNeXt")
def _resnet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    kind = backbone["type"]
    depth = backbone.get("depth")
    deep = {"ResNetV1c": True, "ResNetV1d": True}.get(kind, False)
    avg = kind == "ResNetV1d"
    same = {**RESNET_SAME, "deep_stem": deep, "avg_down": avg, "se_ratio": 16}
    kwargs: dict[str, Any] = {}
    if kind in ("ResNeXt", "SEResNeXt"):
        groups, width = backbone.get("groups", 32), backbone.get("width_per_group", 4)
        prefix = "se" if kind == "SEResNeXt" else ""
        name = f"{prefix}resnext{depth}_{groups}x{width}d"
        if depth == 152 and not prefix:
            name, kwargs = f"resnext101_{groups}x{width}d", {"layers": RESNEXT_152}
        used = {"depth", "groups", "width_per_group"}
    elif kind == "ResNet" and backbone.get("base_channels") == 128 and backbone.get("expansion") == 2:
        prefix, name = "", f"wide_resnet{depth}_2"  # WRN-50-2: twice the bottleneck width
        used = {"depth", "base_channels", "expansion"}
    else:
        prefix = "se" if kind == "SEResNet" else ""
        suffix = {"ResNetV1c": "c", "ResNetV1d": "d"}.get(kind, "")
        name = f"{prefix}resnet{depth}{suffix}"
        used = {"depth"}
    require(name)
    if backbone.get("drop_path_rate"):
        kwargs |= drop_path(backbone)  # both decay it linearly from 0 over the blocks
    # trainer.port.freeze writes the freeze rules of frozen_stages
    check_args(backbone, key, report, used | {"drop_path_rate", "frozen_stages"}, same, name)
    return TimmModel(name, kwargs, "resnet")


@handles("ResNeSt")
def _resnest(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    depth = backbone.get("depth")
    names = {50: "resnest50d", 101: "resnest101e", 200: "resnest200e", 269: "resnest269e"}
    if depth not in names:
        raise NoTimmModel(f"ResNeSt depth {depth!r} has no timm equivalent in the port's table")
    name = names[depth]
    same = {**RESNET_SAME, "stem_channels": 64 if depth == 50 else 128, "groups": 1, "width_per_group": 4}
    same |= {"radix": 2, "reduction_factor": 4, "avg_down_stride": True, "deep_stem": True, "avg_down": True}
    check_args(backbone, key, report, {"depth"}, same, name)
    return TimmModel(name, drop_path(backbone) if backbone.get("drop_path_rate") else {}, "resnest")


CSP_SAME = {"in_channels": 3, "frozen_stages": -1, "conv_cfg": None, "norm_eval": False}
CSP_SAME |= {"norm_cfg": {"type": "BN", "eps": 1e-5}, "act_cfg": {"type": "LeakyReLU", "inplace": True}}


@handles("CSPDarkNet", "CSPResNet", "CSPResNeXt")
def _cspnet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    kind, depth = backbone["type"], backbone.get("depth")
    names = {("CSPDarkNet", 53): "cspdarknet53", ("CSPResNet", 50): "cspresnet50"}
    names |= {("CSPResNeXt", 50): "cspresnext50"}
    if (kind, depth) not in names:
        raise NoTimmModel(f"{kind} depth {depth!r} has no timm equivalent in the port's table")
    name = names[kind, depth]
    same = {**CSP_SAME, "out_indices": (4,) if kind == "CSPDarkNet" else (3,), "deep_stem": False}
    check_args(backbone, key, report, {"depth"}, same, name)
    return TimmModel(name, {}, "cspnet")


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
    return TimmModel(name, {}, "regnet")


@handles("Res2Net")
def _res2net(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    depth, scales, width = backbone.get("depth"), backbone.get("scales", 4), backbone.get("base_width", 26)
    name = f"res2net{depth}_{width}w_{scales}s"
    require(name)
    same = {**RESNET_SAME, "deep_stem": True, "avg_down": True}
    if backbone.get("deep_stem", True) or backbone.get("avg_down", True):
        raise NoTimmModel("Res2Net with deep_stem/avg_down (MMPretrain's default) has no timm equivalent")
    used = {"depth", "scales", "base_width", "deep_stem", "avg_down"}
    check_args(backbone, key, report, used, same, name)
    return TimmModel(name, {}, "res2net")


@handles("DenseNet")
def _densenet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = f"densenet{arch_name(backbone, '121', {a: a for a in ('121', '161', '169', '201')})}"
    same = {"in_channels": 3, "bn_size": 4, "drop_rate": 0, "compression_factor": 0.5}
    same |= {"memory_efficient": False, "norm_cfg": {"type": "BN"}, "act_cfg": {"type": "ReLU"}}
    same |= {"out_indices": -1, "frozen_stages": 0}
    check_args(backbone, key, report, {"arch"}, same, name)
    return TimmModel(name, {}, "densenet")


@handles("VGG")
def _vgg(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    depth, norm = backbone.get("depth"), backbone.get("norm_cfg")
    if depth not in (11, 13, 16, 19):
        raise NoTimmModel(f"VGG depth {depth!r} has no timm equivalent")
    name = f"vgg{depth}{'_bn' if norm else ''}"
    if norm not in (None, {"type": "BN"}):
        raise NoTimmModel(f"VGG with norm_cfg {norm!r} has no timm equivalent")
    num_classes = backbone.get("num_classes", -1)
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise NoTimmModel("VGG without its classifier (num_classes <= 0): timm's vgg always has one")
    same = {"num_stages": 5, "dilations": (1, 1, 1, 1, 1), "out_indices": None, "frozen_stages": -1}
    same |= {"conv_cfg": None, "act_cfg": {"type": "ReLU"}, "norm_eval": False, "ceil_mode": False}
    same |= {"with_last_pool": True}
    check_args(backbone, key, report, {"depth", "norm_cfg", "num_classes"}, same, name)
    return TimmModel(name, {"num_classes": num_classes}, "vgg")


@handles("InceptionV3")
def _inception_v3(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    name = "inception_v3"
    kwargs: dict[str, Any] = {"num_classes": int(backbone.get("num_classes", 1000))}
    kwargs["drop_rate"] = float(backbone.get("dropout", 0.5))
    if backbone.get("aux_logits"):
        kwargs["aux_logits"] = True
        report.skip(f"{key}.aux_logits", "True: the recipe's loss uses only the main logits")
    check_args(backbone, key, report, {"num_classes", "dropout", "aux_logits"}, {}, name)
    return TimmModel(name, kwargs, "inception_v3")


@handles("HRNet")
def _hrnet(backbone: dict[str, Any], key: str, report: Report) -> TimmModel:
    archs = {f"w{w}": f"w{w}" for w in (18, 30, 32, 40, 44, 48, 64)}
    name = f"hrnet_{arch_name(backbone, 'w32', archs)}"
    same = {"in_channels": 3, "norm_eval": False, "zero_init_residual": False, "multiscale_output": True}
    same |= {"conv_cfg": None, "norm_cfg": {"type": "BN"}}
    check_args(backbone, key, report, {"arch"}, same, name)
    return TimmModel(name, {}, "hrnet")
