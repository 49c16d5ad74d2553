"""The `[data]` section: load a Hugging Face image dataset, check it against the model, build DataLoaders.

Static checks of `[data]` (types, ranges, combinations, defaults) belong to its schema, `DataCfg`; here are
only the checks that need the files, the model or this machine. The image pipeline is trainer.transforms'.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainer.bad_samples import MAX_IN_A_ROW, BadSamples, describe
from trainer.errors import RecipeError, did_you_mean
from trainer.folder import annotation_dataset, folder_dataset_dict
from trainer.sampler import RepeatedAugmentation
from trainer.schedule.units import batches_per_epoch  # noqa: F401 - re-exported for the data API
from trainer.schema import NO_EVAL, DataCfg
from trainer.schema_errors import validate_section
from trainer.seeding import SeededTransform
from trainer.transforms import (
    build_transforms,
    collate_image_batch,
    eval_loader,
    model_in_chans,
    probe_pipelines,
    validate_augment,
)

DATA_KEYS = frozenset(DataCfg.model_fields)
"""Every key `[data]` accepts."""

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SEP = r"[-._ 0-9/]"


def data_config(data_cfg: Mapping[str, Any] | DataCfg) -> DataCfg:
    """`[data]` with every default filled in, checked by its schema (RecipeError on a problem)."""
    if isinstance(data_cfg, DataCfg):
        return data_cfg
    return validate_section(DataCfg, data_cfg, ("data",))


def validate_data_cfg(data_cfg: Mapping[str, Any] | DataCfg) -> None:
    """Checks of `[data]` that read no files: the schema, augment names against timm's create_transform, and
    the worker options on this machine."""
    cfg = data_config(data_cfg)
    validate_augment(cfg.augment)
    loader_options(cfg)


def loader_options(data_cfg: Mapping[str, Any] | DataCfg) -> dict[str, Any]:
    """DataLoader worker options with defaults filled in.

    Defaults: `num_workers` = min(4, CPUs per local process - 1) (see default_num_workers);
    `pin_memory` when CUDA is present (HF Trainer's default; without CUDA pinning only warns);
    `persistent_workers` whenever there are workers (timm's default: workers are not re-forked every epoch);
    `prefetch_factor` torch's default (2).
    """
    cfg = data_config(data_cfg)
    num_workers = default_num_workers() if cfg.num_workers is None else cfg.num_workers
    options: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available() if cfg.pin_memory is None else cfg.pin_memory,
        "persistent_workers": num_workers > 0 if cfg.persistent_workers is None else cfg.persistent_workers,
    }
    # The schema rejects these with num_workers = 0; here the default on this machine may be 0 workers.
    if options["persistent_workers"] and num_workers == 0:
        raise RecipeError(
            "data.persistent_workers", "needs data.num_workers >= 1 (there are no workers to keep)"
        )
    if cfg.prefetch_factor is not None:
        if num_workers == 0:
            raise RecipeError("data.prefetch_factor", "needs data.num_workers >= 1 (only workers prefetch)")
        options["prefetch_factor"] = cfg.prefetch_factor
    return options


def default_num_workers() -> int:
    """min(4, CPUs per local process - 1): one core per process stays with the training step.

    Decoding and augmenting in a worker overlaps the step; timm's train.py uses 4 workers. A 2-core machine
    gets 1 worker with one process and none with two (torchrun/accelerate set LOCAL_WORLD_SIZE).
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(4, cpus // max(1, local_processes) - 1))


def detect_format(path: str) -> str:
    """The dataset format a `data.path` points at: "disk", "parquet", "imagefolder" or "hub"."""
    if glob.has_magic(path):
        return "parquet"
    local = Path(path).expanduser()
    if local.is_file():
        if local.suffix == ".parquet":
            return "parquet"
        raise RecipeError("data.path", f"{path!r} is a file but not a .parquet file")
    if local.is_dir():
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            return "disk"
        if any(next(local.glob(f"{'*/' * depth}*.parquet"), None) for depth in range(3)):
            return "parquet"
        return "imagefolder"
    if _HUB_NAME.match(path):
        return "hub"
    raise RecipeError("data.path", f"no such file or directory: {path!r} (relative to {os.getcwd()})")


def load_dataset_dict(data_cfg: Mapping[str, Any] | DataCfg) -> Any:
    """Every split of the dataset at `data.path` as a DatasetDict (a single saved Dataset becomes "train")."""
    import datasets

    cfg = data_config(data_cfg)
    path, fmt = cfg.path, cfg.format
    if cfg.streaming:  # every split as a stream of its shards (trainer.streaming): nothing is copied
        from trainer.streaming import streaming_dataset_dict

        return streaming_dataset_dict(cfg)
    if cfg.ann_file is not None:
        return _annotation_splits(cfg)
    if fmt == "auto":
        fmt = detect_format(path)
    if cfg.name is not None and fmt != "hub":
        raise RecipeError("data.name", f"is a hub config name, but {path!r} is a local {fmt} dataset")
    if fmt != "hub" and not glob.has_magic(path) and not Path(path).expanduser().exists():
        raise RecipeError("data.path", f"no such file or directory: {path!r} (relative to {os.getcwd()})")
    local = str(Path(path).expanduser())
    try:
        if fmt == "disk":
            loaded = datasets.load_from_disk(local)
        elif fmt == "imagefolder":
            loaded = folder_dataset_dict(local)
        elif fmt == "parquet":
            loaded = datasets.load_dataset("parquet", **_parquet_files(local))
        else:
            loaded = datasets.load_dataset(path, name=cfg.name)
    except RecipeError:
        raise
    except Exception as err:  # datasets raises many types for a bad path; each is the user's data.path
        where = "on the Hugging Face hub" if fmt == "hub" else f"as {fmt}"
        message = f"cannot load {path!r} {where}: {type(err).__name__}: {err}"
        if fmt == "hub" and not Path(path).exists():
            message += f" (not a local path either, relative to {os.getcwd()})"
        key = "data.name" if "config name" in str(err).lower() else "data.path"
        raise RecipeError(key, message) from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _annotation_splits(cfg: DataCfg) -> Any:
    """MMPretrain's layout: the train split from `ann_file`, the eval split from `eval_ann_file`."""
    import datasets

    if not Path(cfg.path).expanduser().is_dir():
        raise RecipeError("data.path", f"no such directory: {cfg.path!r} (the data root of data.ann_file)")
    splits = {cfg.train_split: annotation_dataset(cfg.path, cfg.ann_file, cfg.data_prefix, "data.ann_file")}
    if cfg.eval_ann_file is not None:
        splits[cfg.eval_split] = annotation_dataset(
            cfg.path, cfg.eval_ann_file, cfg.eval_data_prefix, "data.eval_ann_file"
        )
    return datasets.DatasetDict(splits)


def load_splits(
    data_cfg: Mapping[str, Any] | DataCfg, *, seed: int, num_classes: int | None = None
) -> tuple[Any, Any]:
    """The checked train and eval Datasets (eval None when disabled), reduced to the image and label columns.

    One RecipeError for a missing split or column, non-integer or out-of-range labels, or an empty split.
    """
    cfg = data_config(data_cfg)
    with quiet_progress_bars():
        return _load_splits(cfg, seed, num_classes)


def _load_splits(cfg: DataCfg, seed: int, num_classes: int | None) -> tuple[Any, Any]:
    splits = load_dataset_dict(cfg)
    train = _checked(_pick_split(splits, cfg.train_split, "data.train_split"), cfg, "train", num_classes)
    eval_name = cfg.eval_split
    if eval_name.lower() == NO_EVAL:
        return train, None
    if eval_name in splits:
        return train, _checked(splits[eval_name], cfg, "eval", num_classes)
    if cfg.eval_fraction is not None:
        return _hold_out(train, cfg.eval_fraction, cfg.label_column, seed)
    _pick_split(
        splits,
        eval_name,
        "data.eval_split",
        hint="; or set data.eval_fraction to hold out part of train, or data.eval_split = 'none'",
    )
    raise AssertionError("unreachable")


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide `datasets`' progress bars unless stderr is a terminal: in a log file they are noise, and a bad
    data configuration must end in exactly one line on stderr."""
    from datasets.utils import logging as datasets_logging

    if sys.stderr.isatty() or not datasets_logging.is_progress_bar_enabled():
        yield
        return
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        datasets_logging.enable_progress_bar()


def build_dataloaders(
    data_cfg: Mapping[str, Any], model: torch.nn.Module, *, seed: int, num_replicas: int = 1, rank: int = 0
) -> tuple[DataLoader, DataLoader | None]:
    """Unprepared train (shuffled with a seeded generator) and eval DataLoaders yielding (pixels, labels).

    The train sampler is a plain RandomSampler, which `accelerator.prepare` swaps for Accelerate's
    SeedableRandomSampler under `DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed)`;
    then each epoch's order is a function of (data_seed, epoch). With `data.repeated_augmentation` it is
    this process's (`rank` of `num_replicas`) RepeatedAugmentation sampler instead, already sharded: the loop
    prepares it without Accelerate's sharding. Each sample's augmentation is a function of
    (seed, epoch, index) (`SeededTransform`): call `set_epoch(loader, epoch)` every epoch.
    """
    cfg = data_config(data_cfg)
    validate_augment(cfg.augment)
    options = loader_options(cfg)
    if cfg.streaming:  # the train split streamed from shards, this process's share (trainer.streaming)
        from trainer.streaming import build_streaming_dataloaders

        with quiet_progress_bars():
            return build_streaming_dataloaders(
                cfg, model, options, seed=seed, num_replicas=num_replicas, rank=rank
            )
    train_ds, eval_ds = load_splits(cfg, seed=seed, num_classes=getattr(model, "num_classes", None))
    if cfg.drop_last and len(train_ds) < cfg.batch_size:
        raise RecipeError(
            "data.batch_size",
            f"{cfg.batch_size} is more than the {len(train_ds)} training samples: with drop_last an"
            " epoch has no batch; lower it",
        )
    train_tf, eval_tf = build_transforms(
        model,
        image_column=cfg.image_column,
        label_column=cfg.label_column,
        image_size=cfg.image_size,
        augment=cfg.augment,
    )
    in_chans = model_in_chans(model)
    probe_pipelines(train_ds, cfg.train_split, {"eval": eval_tf, "train": train_tf}, in_chans)
    bad_train = BadSamples(cfg.image_column, cfg.on_bad_sample)
    train_set = SeededTransform(train_ds, train_tf, seed=seed, bad=bad_train)
    order: dict[str, Any] = {"shuffle": True, "generator": torch.Generator().manual_seed(seed)}
    if cfg.repeated_augmentation > 1:
        sampler = RepeatedAugmentation(
            train_set, num_replicas=num_replicas, rank=rank, num_repeats=cfg.repeated_augmentation, seed=seed
        )
        order = {"sampler": sampler}
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        **order,
        drop_last=cfg.drop_last,
        collate_fn=collate_image_batch,
        **options,
    )
    if eval_ds is None:
        return train_loader, None
    probe_pipelines(eval_ds, cfg.eval_split, {"eval": eval_tf}, in_chans)
    return train_loader, eval_loader(eval_ds, eval_tf, cfg, options)


class DataWatch:
    """What the loop needs to know of unreadable samples, read from the loaders' shared memory (no sync)."""

    def __init__(self, *loaders: DataLoader | None) -> None:
        self.watched = [
            (loader.dataset.bad, loader.dataset.dataset)
            for loader in loaders
            if loader is not None and getattr(loader.dataset, "bad", None) is not None
        ]

    def total(self) -> int:
        """Samples replaced so far (this process)."""
        return sum(bad.total() for bad, _ in self.watched)

    def fatal(self) -> str | None:
        """One line naming the file that ends the run ("stop", or too many unreadable in a row), else None."""
        for bad, dataset in self.watched:
            row = bad.fatal()
            if row is not None:
                what = (
                    f"{MAX_IN_A_ROW} unreadable images in a row from" if bad.too_many.any() else "unreadable"
                )
                file = describe(dataset, row, bad.image_column)
                return f"data error: data.on_bad_sample: {what} image {file}"
        return None


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Start `epoch` of a prepared train loader: its order (Accelerate's seedable sampler) and the
    augmentation of its samples (Accelerate does not pass the epoch on to a dataset under its sampler)."""
    loader.set_epoch(epoch)
    if isinstance(loader.dataset, SeededTransform):
        loader.dataset.set_epoch(epoch)


def _parquet_files(path: str) -> dict[str, Any]:
    """load_dataset("parquet") arguments: a directory keeps datasets' split inference; files are grouped
    into splits by the same filename keywords (train/validation/test), else all are "train"."""
    if Path(path).is_dir():
        return {"data_dir": path}
    files = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else [path]
    if not files:
        raise RecipeError("data.path", f"no file matches {path!r} (relative to {os.getcwd()})")
    by_split: dict[str, list[str]] = {}
    for file in files:
        by_split.setdefault(_split_of(os.path.basename(file)) or "train", []).append(file)
    if len(by_split) == 1:
        return {"data_files": {"train": files}}
    return {"data_files": by_split}


def _split_of(filename: str) -> str | None:
    for split, keywords in _SPLIT_KEYWORDS.items():
        for keyword in keywords:
            if re.search(rf"(^|{_SEP}){keyword}{_SEP}", filename):
                return split
    return None


def _pick_split(splits: Any, name: str, key: str, hint: str = "") -> Any:
    if name in splits:
        return splits[name]
    available = list(splits)
    raise RecipeError(
        key, f"no split {name!r}{did_you_mean(name, available)} (available: {', '.join(available)}){hint}"
    )


def _hold_out(train: Any, fraction: float, label_column: str, seed: int) -> tuple[Any, Any]:
    """Seeded split holding out round(`fraction` x class size) of every class of train for eval."""
    labels = train.with_format("arrow")[label_column].to_numpy()
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # grouped by label, shuffled within a label
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    rank = np.arange(len(order)) - np.repeat(starts, counts)
    quota = np.repeat(np.rint(counts * fraction).astype(np.int64), counts)
    held_out = rank < quota
    if held_out.all() or not held_out.any():
        raise RecipeError(
            "data.eval_fraction",
            f"holding out {fraction} of each of the {len(classes)} classes of {len(labels)} training examples"
            f" leaves {'no training' if held_out.all() else 'no evaluation'} examples",
        )
    return (
        train.select(np.sort(order[~held_out]), keep_in_memory=True),
        train.select(np.sort(order[held_out]), keep_in_memory=True),
    )


def _checked(ds: Any, cfg: DataCfg, role: str, num_classes: int | None) -> Any:
    """Check the train or eval split's columns, labels and size; return it reduced to those two columns."""
    import datasets

    split, image_column, label_column = getattr(cfg, f"{role}_split"), cfg.image_column, cfg.label_column
    columns = list(ds.column_names)
    for key, column in (("data.image_column", image_column), ("data.label_column", label_column)):
        if column not in columns:
            raise RecipeError(
                key,
                f"split {split!r} has no column {column!r}{did_you_mean(column, columns)}"
                f" (columns: {', '.join(columns)})",
            )
    if len(ds) == 0:
        raise RecipeError(f"data.{role}_split", f"split {split!r} of {cfg.path!r} is empty")
    ds = ds.select_columns([image_column, label_column])
    image_feature = ds.features[image_column]
    if not _is_decoded_image(image_feature):
        if not _holds_encoded_images(image_feature):
            raise RecipeError(
                "data.image_column", f"column {image_column!r} holds {image_feature}, not images"
            )
        ds = ds.cast_column(image_column, datasets.Image())
    label_feature = ds.features[label_column]
    if not isinstance(label_feature, datasets.ClassLabel) and not (
        isinstance(label_feature, datasets.Value) and re.fullmatch(r"u?int\d+", label_feature.dtype)
    ):
        raise RecipeError(
            "data.label_column",
            f"column {label_column!r} holds {label_feature}; labels must be integer class ids",
        )
    labels = ds.with_format("arrow")[label_column]
    if labels.null_count:
        raise RecipeError(
            "data.label_column", f"split {split!r} has {labels.null_count} examples without a label"
        )
    if num_classes:
        _check_label_range(labels, split, num_classes)
    return ds


def _is_decoded_image(feature: Any) -> bool:
    import datasets

    return isinstance(feature, datasets.Image) and feature.decode


def _holds_encoded_images(feature: Any) -> bool:
    """Image(decode=False), file paths, raw bytes or {bytes, path} structs: castable to Image()."""
    import datasets

    if isinstance(feature, datasets.Image):
        return True
    if isinstance(feature, datasets.Value):
        return feature.dtype in ("string", "large_string", "binary", "large_binary")
    return isinstance(feature, dict) and set(feature) == {"bytes", "path"}


def _check_label_range(labels: Any, split: str, num_classes: int) -> None:
    import pyarrow.compute as pc

    low, high = (v.as_py() for v in pc.min_max(labels).values())
    if low < 0:
        raise RecipeError(
            "data.label_column",
            f"split {split!r} has negative labels (min {low}); labels must be 0..{num_classes - 1}",
        )
    if high >= num_classes:
        raise RecipeError(
            "data.label_column",
            f"split {split!r} has labels up to {high}, but the model has num_classes = {num_classes}"
            f" (labels must be 0..{num_classes - 1}); set model.num_classes = {high + 1} or more",
        )
