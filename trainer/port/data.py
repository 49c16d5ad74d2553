"""Data: the dataset, batch size, sampler, the train/test pipelines and data_preprocessor -> `[data]`.

Pipelines become timm's `create_transform` arguments (`data.augment`): one RandomResizedCrop, flips,
RandAugment as timm's `rand-...` string, RandomErasing, ColorJitter; the test pipeline's ResizeEdge +
CenterCrop become `crop_pct`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.port.report import Report

HUB = {
    "ImageNet": {"path": "ILSVRC/imagenet-1k", "eval_split": "validation"},
    "CIFAR10": {"path": "uoft-cs/cifar10", "image_column": "img", "eval_split": "test"},
    "CIFAR100": {
        "path": "uoft-cs/cifar100",
        "image_column": "img",
        "label_column": "fine_label",
        "eval_split": "test",
    },
}
"""MMPretrain datasets whose data the Hugging Face hub has under these names and columns."""
IGNORED = ("LoadImageFromFile", "PackInputs", "PackClsInputs", "ToTensor", "Collect")
RAND_POLICIES = {"timm_increasing": "-inc1"}


@dataclass
class DataPort:
    """[data] and where its keys came from."""

    data: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)


def map_data(cfg: dict[str, Any], path: str | None, has_eval: bool, report: Report) -> dict[str, Any]:
    """The recipe's [data]; `path` (--data) replaces the dataset's location."""
    port = DataPort()
    loader = cfg.get("train_dataloader")
    if not isinstance(loader, dict):
        report.skip("train_dataloader", "none in the config: data.path and data.batch_size are placeholders")
        port.data = {"path": path or "data", "batch_size": 32}
        return port.data
    dataset = loader.get("dataset") or {}
    _dataset(dataset, path, port, report)
    port.data["batch_size"] = int(loader.get("batch_size", 1))
    if not has_eval:
        port.data["eval_split"] = "none"
    val = cfg.get("val_dataloader")
    if path is not None and dataset.get("type") in ANNOTATED:
        _annotations(dataset, (val or {}).get("dataset") or {} if has_eval else {}, port)
    if has_eval and isinstance(val, dict) and val.get("batch_size") not in (None, loader.get("batch_size")):
        port.data["eval_batch_size"] = int(val["batch_size"])
    _sampler(loader.get("sampler"), port, report)
    for arg in ("collate_fn", "drop_last"):
        if arg in loader and loader[arg] not in (None, {"type": "default_collate"}):
            report.skip(
                f"train_dataloader.{arg}", f"{loader[arg]!r}: the recipe's loader drops the last batch"
            )
    _train_pipeline(dataset.get("pipeline") or [], port, report)
    val_pipeline = ((val or {}).get("dataset") or {}).get("pipeline") or []
    if has_eval or val_pipeline:
        _test_pipeline(val_pipeline, port, report)
    _normalization(cfg, port, report)
    port.data["augment"] = port.augment
    return port.data


def _dataset(dataset: dict[str, Any], path: str | None, port: DataPort, report: Report) -> None:
    kind = dataset.get("type")
    key = "train_dataloader.dataset"
    root = dataset.get("data_root") or ""
    if kind in HUB:
        hub = HUB[kind]
        port.data["path"] = path or hub["path"]
        port.data["image_column"] = hub.get("image_column", "image")
        port.data["label_column"] = hub.get("label_column", "label")
        port.data["train_split"] = "train"
        port.data["eval_split"] = hub["eval_split"]
        if path is None:
            report.note(
                f"{key}.data_root",
                f"{root!r} (MMPretrain's {kind} layout): the recipe reads {hub['path']!r} from the hub; "
                "--data PATH for a local copy (save_to_disk folder, image folder, parquet)",
            )
    elif kind == "CustomDataset" and not dataset.get("ann_file"):
        prefix = dataset.get("data_prefix") or ""
        prefix = prefix.get("img_path", "") if isinstance(prefix, dict) else prefix
        port.data["path"] = path or "/".join(p for p in (root.rstrip("/"), prefix) if p) or "data"
        port.data["format"] = "imagefolder"
        report.note(key, "CustomDataset (class sub-folders) is read as an image folder")
    else:
        port.data["path"] = path or root or "data"
        if path is None:
            report.skip(
                f"{key}.type",
                f"{kind!r} has no recipe reader: data.path = {port.data['path']!r}; --data PATH",
            )
    for arg in ("classes", "metainfo", "indices"):
        if dataset.get(arg) and kind != "CustomDataset" and (kind not in HUB or path is not None):
            report.skip(f"{key}.{arg}", f"{dataset[arg]!r} is not a recipe setting")


ANNOTATED = ("ImageNet", "ImageNet21k", "CustomDataset")
"""MMPretrain datasets that read `ann_file` (or `meta/<split>.txt`) under data_root/data_prefix."""


def _annotations(train: dict[str, Any], val: dict[str, Any], port: DataPort) -> None:
    """With --data pointing at MMPretrain's own copy: its annotation files, as data.ann_file & co."""
    for dataset, ann_key, prefix_key in (
        (train, "ann_file", "data_prefix"),
        (val, "eval_ann_file", "eval_data_prefix"),
    ):
        split = dataset.get("split")
        ann = dataset.get("ann_file") or (f"meta/{split}.txt" if split else None)
        if not ann:
            continue
        prefix = dataset.get("data_prefix") or split or ""
        port.data[ann_key] = ann
        port.data[prefix_key] = prefix.get("img_path", "") if isinstance(prefix, dict) else prefix
    if "ann_file" in port.data:
        for key in ("image_column", "label_column", "train_split", "format"):
            port.data.pop(key, None)
        port.data["eval_split"] = "validation" if "eval_ann_file" in port.data else "none"
    else:
        port.data.pop("eval_ann_file", None)
        port.data.pop("eval_data_prefix", None)


def _sampler(sampler: Any, port: DataPort, report: Report) -> None:
    if not isinstance(sampler, dict):
        return
    kind = sampler.get("type", "DefaultSampler")
    if kind == "RepeatAugSampler":
        port.data["repeated_augmentation"] = int(sampler.get("num_repeats", 3))
    elif kind == "DefaultSampler":
        port.data["repeated_augmentation"] = 1
        if sampler.get("shuffle", True) is False:
            report.skip("train_dataloader.sampler.shuffle", "False: the recipe shuffles the train split")
    else:
        report.skip("train_dataloader.sampler", f"{kind!r} has no recipe counterpart")


def _train_pipeline(pipeline: list[dict[str, Any]], port: DataPort, report: Report) -> None:
    aug = port.augment
    aug.update({"hflip": 0.0, "vflip": 0.0, "color_jitter": 0.0})
    cropped = False
    for i, step in enumerate(pipeline):
        key = f"train_pipeline[{i}]"
        kind = step.get("type")
        if kind in IGNORED:
            continue
        if kind == "RandomResizedCrop":
            cropped = True
            port.data["image_size"] = _size(step.get("scale"), key, report)
            aug["scale"] = [float(v) for v in step.get("crop_ratio_range", (0.08, 1.0))]
            aug["ratio"] = [float(v) for v in step.get("aspect_ratio_range", (3 / 4, 4 / 3))]
            aug["interpolation"] = step.get("interpolation", "bilinear")
            _backend(step, key, report)
        elif kind == "RandomFlip":
            _flip(step, key, aug, report)
        elif kind == "RandAugment":
            _rand_augment(step, key, aug, report)
        elif kind == "AutoAugment" and step.get("policies") == "imagenet":
            aug["auto_augment"] = "original"
            report.skip(
                key,
                "AutoAugment 'imagenet' -> timm's 'original': the same sub-policies, but timm's "
                "magnitudes are level/10 of each range, MMPretrain's level/9",
            )
        elif kind == "RandomErasing":
            _erasing(step, key, aug, report)
        elif kind == "ColorJitter":
            _jitter(step, key, aug, report)
        else:
            report.skip(key, f"{kind!r} has no timm create_transform counterpart: left out")
    if not cropped:
        report.skip(
            "train_pipeline", "no RandomResizedCrop: timm's train transform always crops (scale 0.08-1)"
        )


def _size(scale: Any, key: str, report: Report) -> int | None:
    if isinstance(scale, int):
        return scale
    if isinstance(scale, (list, tuple)) and len(scale) == 2 and scale[0] == scale[1]:
        return int(scale[0])
    report.skip(f"{key}.scale", f"{scale!r}: the recipe's images are square")
    return int(scale[0]) if isinstance(scale, (list, tuple)) and scale else None


def _backend(step: dict[str, Any], key: str, report: Report) -> None:
    if step.get("backend", "cv2") != "pillow":
        report.note(f"{key}.backend", "OpenCV resampling in MMPretrain, PIL in timm (PIL antialiases)")


def _flip(step: dict[str, Any], key: str, aug: dict[str, Any], report: Report) -> None:
    prob, direction = step.get("prob", 0.5), step.get("direction", "horizontal")
    if direction == "horizontal" and isinstance(prob, (int, float)):
        aug["hflip"] = float(prob)
    elif direction == "vertical" and isinstance(prob, (int, float)):
        aug["vflip"] = float(prob)
    else:
        report.skip(key, f"RandomFlip(prob={prob!r}, direction={direction!r}): one direction per flip")


def _rand_augment(step: dict[str, Any], key: str, aug: dict[str, Any], report: Report) -> None:
    policies = step.get("policies")
    if not isinstance(policies, str) or policies not in RAND_POLICIES:
        report.skip(key, f"RandAugment policies {policies!r}: only 'timm_increasing' is a timm policy")
        return
    if step.get("total_level", 10) != 10:
        report.skip(f"{key}.total_level", f"{step['total_level']!r}: timm's magnitude scale is 10")
    if step.get("magnitude_std", 0.0) in ("inf", float("inf")):
        mstd = "-mstd101"
    else:
        mstd = f"-mstd{float(step.get('magnitude_std', 0.0)):g}" if step.get("magnitude_std") else ""
    magnitude = step.get("magnitude_level", 9)
    aug["auto_augment"] = f"rand-m{magnitude:g}-n{step.get('num_policies', 2)}{mstd}{RAND_POLICIES[policies]}"


def _erasing(step: dict[str, Any], key: str, aug: dict[str, Any], report: Report) -> None:
    aug["re_prob"] = float(step.get("erase_prob", 0.5))
    mode = step.get("mode", "const")
    if mode == "rand" and step.get("fill_std") is not None:
        aug["re_mode"] = "pixel"
    elif mode == "rand":
        aug["re_mode"] = "pixel"
        report.skip(
            f"{key}.fill_std",
            "None (uniform 0-255 noise): timm's 'pixel' mode draws N(0, 1) after normalization",
        )
    else:
        aug["re_mode"] = "const"
        report.skip(
            f"{key}.mode",
            f"'const' fills {step.get('fill_color', (128, 128, 128))!r}; timm fills the mean colour",
        )
    aug["re_count"] = 1
    if step.get("min_area_ratio", 0.02) != 0.02 or abs(step.get("max_area_ratio", 1 / 3) - 1 / 3) > 1e-9:
        report.skip(key, "erased area range other than 0.02-1/3 (timm's) is not a create_transform argument")
    if step.get("aspect_range") not in (None, (0.3, 1 / 0.3), [0.3, 1 / 0.3]):
        report.skip(f"{key}.aspect_range", f"{step['aspect_range']!r}: timm's is 0.3-1/0.3")


def _jitter(step: dict[str, Any], key: str, aug: dict[str, Any], report: Report) -> None:
    values = [step.get(k, 0.0) for k in ("brightness", "contrast", "saturation", "hue")]
    if not all(isinstance(v, (int, float)) for v in values):
        report.skip(key, "ColorJitter ranges (tuples) are not timm's color_jitter")
        return
    values = [float(v) for v in values]
    aug["color_jitter"] = values[0] if len(set(values[:3])) == 1 and values[3] == 0 else values


def _test_pipeline(pipeline: list[dict[str, Any]], port: DataPort, report: Report) -> None:
    aug = port.augment
    resize: int | None = None
    crop: int | None = None
    interpolation = None
    for i, step in enumerate(pipeline):
        key = f"test_pipeline[{i}]"
        kind = step.get("type")
        if kind in IGNORED:
            continue
        if kind == "ResizeEdge" and step.get("edge", "short") == "short":
            resize = int(step["scale"])
            interpolation = step.get("interpolation", "bilinear")
            _backend(step, key, report)
        elif kind == "Resize" and _size(step.get("scale"), key, Report()) is not None:
            resize = _size(step.get("scale"), key, report)
            aug["crop_mode"] = "squash"
            interpolation = step.get("interpolation", "bilinear")
        elif kind == "CenterCrop":
            crop = _size(step.get("crop_size"), key, report)
        elif (
            kind == "EfficientNetCenterCrop"
        ):  # the centre crop_size / (crop_size + padding) of the short edge
            crop = _size(step.get("crop_size"), key, report)
            resize = (crop or 0) + int(step.get("crop_padding", 32))
            interpolation = step.get("interpolation", "bicubic")
        else:
            report.skip(key, f"{kind!r} has no timm eval-transform counterpart: left out")
    size = crop or resize
    if size is None:
        return
    if port.data.get("image_size") is None:
        port.data["image_size"] = size
    elif port.data["image_size"] != size:
        port.data["eval_image_size"] = size
        report.note(
            "test_pipeline", f"evaluates at {size}, trains at {port.data['image_size']}: data.eval_image_size"
        )
    aug["crop_pct"] = size / resize if resize and crop else 1.0
    train_interp = aug.get("interpolation")
    if interpolation is not None and train_interp is None:
        aug["interpolation"] = interpolation
    elif interpolation is not None and interpolation != train_interp:
        report.skip(
            "test_pipeline", f"{interpolation!r} resize, {train_interp!r} train crop: one interpolation"
        )


def _normalization(cfg: dict[str, Any], port: DataPort, report: Report) -> None:
    pre = cfg.get("data_preprocessor") or (cfg.get("model") or {}).get("data_preprocessor")
    if not isinstance(pre, dict) or pre.get("mean") is None:
        report.skip(
            "data_preprocessor", "no mean/std: MMPretrain does not normalize, the recipe uses the model's"
        )
        return
    port.augment["mean"] = [round(float(v) / 255, 10) for v in pre["mean"]]
    port.augment["std"] = [round(float(v) / 255, 10) for v in pre.get("std") or (255.0, 255.0, 255.0)]
    if not pre.get("to_rgb", False) and pre.get("type") != "SelfSupDataPreprocessor":
        report.skip("data_preprocessor.to_rgb", "False (the model sees BGR in MMPretrain): timm reads RGB")
    for arg in pre:
        if arg not in ("type", "mean", "std", "to_rgb", "num_classes", "to_onehot"):
            report.skip(f"data_preprocessor.{arg}", f"{pre[arg]!r} is not a recipe setting")
