"""The image pipeline: timm's train and eval transforms for a model, applied lazily to Hugging Face dataset
batches as `pixel_values` / `labels`, checked on one example, and collated into (pixels, labels) batches."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from trainer.data.bad_samples import MAX_IN_A_ROW
from trainer.errors import RecipeError, did_you_mean
from trainer.model.create import model_in_chans

RESERVED_AUGMENT_ARGS: dict[str, str] = {
    "input_size": "set data.image_size instead",
    "is_training": "the trainer builds the train pipeline with is_training=true and eval with false",
    "use_prefetcher": "the trainer decides: workers return uint8 and the loop normalizes on the device,"
    " unless re_prob > 0 (timm erases in normalized space, so those workers return float)",
    "tf_preprocessing": "batches must be normalized float tensors",
    "separate": "the pipeline must be one transform",
    "naflex": "batches must be fixed-size image tensors",
    "patch_size": "batches must be fixed-size image tensors",
    "max_seq_len": "batches must be fixed-size image tensors",
    "patchify": "batches must be fixed-size image tensors",
    "patchify_channels_last": "batches must be fixed-size image tensors",
    "patchify_flatten": "batches must be fixed-size image tensors",
}
"""create_transform arguments the trainer owns, with the reason shown to the user."""

MODEL_INPUT_ARGS = ("mean", "std", "crop_pct", "crop_mode", "interpolation")
"""Augment keys that describe the model's input, so they also apply to the eval pipeline."""


def augment_arg_names() -> list[str]:
    """The keyword arguments of timm's create_transform that `[data.augment]` may set."""
    params = inspect.signature(create_transform).parameters
    return sorted(name for name in params if name not in RESERVED_AUGMENT_ARGS)


def validate_augment(augment: Mapping[str, Any]) -> None:
    """Check `[data.augment]` names against create_transform's signature (values are checked at build)."""
    allowed = augment_arg_names()
    for name in augment:
        if name in RESERVED_AUGMENT_ARGS:
            raise RecipeError(f"data.augment.{name}", f"cannot be set here: {RESERVED_AUGMENT_ARGS[name]}")
        if name not in allowed:
            raise RecipeError(
                f"data.augment.{name}",
                f"timm's create_transform has no argument {name!r}{did_you_mean(name, allowed)}"
                f" (allowed: {', '.join(allowed)})",
            )


def resolve_input_config(
    model: torch.nn.Module,
    image_size: int | None = None,
    augment: Mapping[str, Any] | None = None,
    key: str = "data.image_size",
) -> dict[str, Any]:
    """timm's data config for `model` (input size, interpolation, mean, std, crop), with recipe overrides."""
    overrides = {k: v for k, v in (augment or {}).items() if k in MODEL_INPUT_ARGS and k != "interpolation"}
    if augment and augment.get("interpolation") not in (None, "random"):
        overrides["interpolation"] = augment["interpolation"]
    built_size = _built_image_size(model)
    if image_size is not None:
        if built_size is not None and built_size != image_size and _strict_image_size(model):
            raise RecipeError(
                key,
                f"is {image_size}, but the model was built for {built_size}x{built_size} images;"
                f" set model.img_size = {image_size} too (or drop {key})",
            )
        overrides["img_size"] = image_size
    elif built_size is not None:
        overrides["img_size"] = built_size
    in_chans = model_in_chans(model)
    overrides["in_chans"] = in_chans
    try:
        return resolve_data_config(overrides, model=model)
    except (AssertionError, TypeError, ValueError) as err:
        detail = f": {err}" if str(err) else ""
        for key in ("mean", "std"):
            if key in overrides and len(overrides[key]) not in (1, in_chans):
                raise RecipeError(
                    f"data.augment.{key}", f"must have 1 or {in_chans} values (the model's input channels)"
                ) from None
        raise RecipeError("data.augment", f"timm's resolve_data_config rejected it{detail}") from None


def _built_image_size(model: torch.nn.Module) -> int | None:
    """The square image size a patch-embedding model (ViT, Swin, ...) was built for, else None.

    `create_model(..., img_size=N)` does not update pretrained_cfg, so that size wins over it.
    """
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(size, int):
        return size
    if isinstance(size, (tuple, list)) and len(size) == 2 and size[0] == size[1]:
        return int(size[0])
    return None


def _strict_image_size(model: torch.nn.Module) -> bool:
    patch_embed = getattr(model, "patch_embed", None)
    return bool(getattr(patch_embed, "strict_img_size", False)) and not getattr(
        patch_embed, "dynamic_img_pad", False
    )


class ImageClassificationTransform:
    """Batch transform of dataset columns: images -> `pixel_values`, labels -> `labels` (`SeededTransform`
    applies it one sample at a time).

    Images are converted to the model's channel mode first, so grayscale data feeds a 3-channel model.
    A class (not a closure) so DataLoader workers can pickle it under any start method.
    """

    def __init__(
        self,
        transform: Callable[[Any], torch.Tensor],
        image_column: str,
        label_column: str,
        in_chans: int = 3,
        device_normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ) -> None:
        self.transform = transform
        self.image_column = image_column
        self.label_column = label_column
        self.mode = "L" if in_chans == 1 else "RGB"
        self.device_normalize = device_normalize
        """(mean, std) when `transform` gives uint8 pixels that the loop normalizes on the device."""

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        images = [self.converted(img) for img in batch[self.image_column]]
        return {
            "pixel_values": [self.transform(img) for img in images],
            "labels": batch[self.label_column],
        }

    def example(self, batch: dict[str, list[Any]], j: int) -> dict[str, Any]:
        """Example `j` of a fetched batch, transformed (what `SeededTransform` calls once per sample)."""
        img = self.converted(batch[self.image_column][j])
        return {"pixel_values": self.transform(img), "labels": batch[self.label_column][j]}

    def converted(self, img: Any) -> Any:
        """`img` in the model's channel mode, 16-bit images scaled to 8 bits (PIL's convert would clip
        them: 99 % white)."""
        if img.mode == self.mode:
            return img
        if img.mode.startswith("I"):  # "I;16", "I;16B", ... and "I" (how PIL opens 16-bit PNGs)
            pixels = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
            img = Image.fromarray(np.clip(np.rint(pixels * (255.0 / top)), 0, 255).astype(np.uint8), "L")
            if img.mode == self.mode:
                return img
        return img.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r}, transform={self.transform})"


def build_transforms(
    model: torch.nn.Module,
    *,
    image_column: str = "image",
    label_column: str = "label",
    image_size: int | None = None,
    augment: Mapping[str, Any] | None = None,
    eval_image_size: int | None = None,
) -> tuple[ImageClassificationTransform, ImageClassificationTransform]:
    """Train (augmented, per `augment`) and eval pipelines from timm's data config for `model`; the eval
    pipeline at `eval_image_size` where given.

    `augment`'s names are not checked here: `validate_augment` does it once, with the rest of `[data]`.
    """
    augment = dict(augment or {})
    config = resolve_input_config(model, image_size, augment)
    evaluated = config
    if eval_image_size is not None:
        evaluated = resolve_input_config(model, eval_image_size, augment, key="data.eval_image_size")
    # timm's prefetcher pipelines end in uint8 (4x less to copy to a GPU); random erasing works in
    # normalized space, so with re_prob the workers normalize and erase as timm's non-prefetcher pipeline does
    uint8 = not augment.get("re_prob")
    common = {k: config[k] for k in ("input_size", "mean", "std", "crop_pct", "crop_mode")}
    train_args = {**augment, **common, "use_prefetcher": uint8}
    train_args.setdefault("interpolation", config["interpolation"])
    eval_common = {k: evaluated[k] for k in ("input_size", "mean", "std", "crop_pct", "crop_mode")}
    eval_args = {**eval_common, "interpolation": evaluated["interpolation"], "use_prefetcher": uint8}
    try:
        train_tf = create_transform(**train_args, is_training=True)
        eval_tf = create_transform(**eval_args, is_training=False)
    except Exception as err:  # any failure here comes from the recipe's augment values (IndexError too)
        raise RecipeError(
            "data.augment", f"timm's create_transform rejected {augment}: {type(err).__name__}: {err}"
        ) from None
    in_chans = config["input_size"][0]
    normalize = (tuple(config["mean"]), tuple(config["std"])) if uint8 else None
    return (
        ImageClassificationTransform(train_tf, image_column, label_column, in_chans, normalize),
        ImageClassificationTransform(eval_tf, image_column, label_column, in_chans, normalize),
    )


class DeviceNormalize:
    """timm's prefetcher normalization of uint8 batches on the device: (x - 255 mean) / (255 std) in
    float32; float batches (pipelines that normalized in the workers, synthetic data) pass unchanged."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> None:
        self.mean = torch.tensor([255 * m for m in mean], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor([255 * s for s in std], device=device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            return images
        return images.float().sub_(self.mean).div_(self.std)


def batch_normalizer(loader: Any, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """What turns `loader`'s batches into the model's input on `device` (identity for float batches)."""
    stats = getattr(getattr(getattr(loader, "dataset", None), "transform", None), "device_normalize", None)
    return DeviceNormalize(*stats, device) if stats else _unchanged


def _unchanged(images: torch.Tensor) -> torch.Tensor:
    return images


def collate_image_batch(examples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack transformed examples into (pixel_values [B, C, H, W], uint8 or float, labels int64 [B])."""
    pixels = torch.stack([ex["pixel_values"] for ex in examples])
    labels = torch.tensor([ex["labels"] for ex in examples], dtype=torch.int64)
    return pixels, labels


def probe_pipelines(
    ds: Any, split: str, pipelines: dict[str, Any], in_chans: int, skip_unreadable: bool = False
) -> None:
    """Run the first image of `split` (the first readable one, with `skip_unreadable`: the run replaces
    unreadable ones) through each pipeline, so bad images or augment values fail now.

    Tries the eval pipeline first: if it works and the train one fails, the augment options are to blame.
    Random augmentations draw from the global RNGs; their state is restored so probing changes nothing.
    """
    tries = min(len(ds), MAX_IN_A_ROW) if skip_unreadable else 1
    example, first_error = None, None
    for row in range(max(1, tries)):
        try:
            example = ds[row : row + 1]
            break
        except Exception as err:  # noqa: BLE001 - any decode failure is a data error for the user
            first_error = first_error or err
    if example is None:
        what = "first image" if tries <= 1 else f"first {tries} images"
        raise RecipeError(
            "data.image_column",
            f"cannot decode the {what} of split {split!r}: {type(first_error).__name__}: {first_error}",
        )
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        for name, pipeline in pipelines.items():
            key = "data.augment" if name == "train" else "data.image_column"
            try:
                with torch.random.fork_rng(devices=[]):
                    pixels = pipeline(example)["pixel_values"][0]
            except Exception as err:  # any transform failure is a data error for the user
                raise RecipeError(
                    key,
                    f"the {name} pipeline fails on the first image of split {split!r}:"
                    f" {type(err).__name__}: {err}",
                ) from None
            if (
                pixels.ndim != 3
                or pixels.shape[0] != in_chans
                or pixels.dtype not in (torch.uint8, torch.float32)
            ):
                raise RecipeError(
                    key,
                    f"the {name} pipeline gives {tuple(pixels.shape)} {pixels.dtype} for split {split!r};"
                    f" the model needs a uint8 or float tensor of shape ({in_chans}, H, W)",
                )
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
