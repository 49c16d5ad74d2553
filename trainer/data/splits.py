"""The train and eval splits a recipe trains on, from whichever source `[data]` names: picked by name (or the
eval split held out of train), checked once for every source (columns, images, integer labels in the
model's range, not empty) and reduced to the image and label columns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from trainer.data.options import data_config, quiet_progress_bars
from trainer.data.schema import NO_EVAL, DataCfg
from trainer.data.sources import Source, Split, open_source
from trainer.errors import RecipeError, did_you_mean


def open_splits(
    data_cfg: Mapping[str, Any] | DataCfg, *, seed: int, num_classes: int | None = None
) -> tuple[Split, Split | None]:
    """The checked train and eval splits (eval None when disabled); a streamed run's eval split is read
    map-style. One RecipeError for a missing split or column, non-integer or out-of-range labels, or an empty
    split."""
    cfg = data_config(data_cfg)
    with quiet_progress_bars():
        source = open_source(cfg)
        train = pick_split(source, cfg.train_split, "data.train_split")
        train = check_split(train, cfg, "train", num_classes)
        eval_name = cfg.eval_split
        if eval_name.lower() == NO_EVAL:
            return train, None
        if eval_name in source.split_names():
            evaluation = check_split(source.split(eval_name), cfg, "eval", num_classes)
            if evaluation.shards is not None:  # evaluation reads map-style: every sample once, in order
                columns = [cfg.image_column, cfg.label_column]
                evaluation = check_split(evaluation.materialized(columns), cfg, "eval", num_classes)
            return train, evaluation
        if cfg.eval_fraction is not None:
            return hold_out(train, cfg.eval_fraction, cfg.label_column, seed)
        hold_out_hint = "" if cfg.streaming else "data.eval_fraction to hold out part of train, or "
        pick_split(
            source, eval_name, "data.eval_split", hint=f"; or set {hold_out_hint}data.eval_split = 'none'"
        )
        raise AssertionError("unreachable")


def load_splits(
    data_cfg: Mapping[str, Any] | DataCfg, *, seed: int, num_classes: int | None = None
) -> tuple[Any, Any]:
    """The rows of `open_splits`' train and eval splits (`datasets.Dataset`s, or a streamed train split's
    `ShardRows`)."""
    train, evaluation = open_splits(data_cfg, seed=seed, num_classes=num_classes)
    return train.rows, evaluation.rows if evaluation is not None else None


def load_dataset_dict(data_cfg: Mapping[str, Any] | DataCfg) -> dict[str, Any]:
    """Every split of the source `[data]` names, unchecked, as its rows by split name."""
    cfg = data_config(data_cfg)
    with quiet_progress_bars():
        source = open_source(cfg)
        return {name: source.split(name).rows for name in source.split_names()}


def pick_split(source: Source, name: str, key: str, hint: str = "") -> Split:
    """Split `name` of `source`; RecipeError naming the splits there are."""
    available = source.split_names()
    if name in available:
        return source.split(name)
    where = getattr(source, "where", "")
    raise RecipeError(
        key,
        f"no split {name!r}{did_you_mean(name, available)}{where} (available: {', '.join(available)}){hint}",
    )


def check_split(split: Split, cfg: DataCfg, role: str, num_classes: int | None) -> Split:
    """Check the train or eval split's columns, labels and size; return it reduced to those two columns (a
    map-style split), images decoded."""
    import datasets

    name, image_column, label_column = getattr(cfg, f"{role}_split"), cfg.image_column, cfg.label_column
    columns = list(split.features)
    for key, column in (("data.image_column", image_column), ("data.label_column", label_column)):
        if column not in columns:
            raise RecipeError(
                key,
                f"split {name!r} has no column {column!r}{did_you_mean(column, columns)}"
                f" (columns: {', '.join(columns)})",
            )
    if len(split) == 0:
        raise RecipeError(f"data.{role}_split", f"split {name!r} of {cfg.path!r} is empty")
    image_feature = split.features[image_column]
    if not _is_decoded_image(image_feature) and not _holds_encoded_images(image_feature):
        raise RecipeError("data.image_column", f"column {image_column!r} holds {image_feature}, not images")
    label_feature = split.features[label_column]
    if not isinstance(label_feature, datasets.ClassLabel) and not (
        isinstance(label_feature, datasets.Value) and re.fullmatch(r"u?int\d+", label_feature.dtype)
    ):
        raise RecipeError(
            "data.label_column",
            f"column {label_column!r} holds {label_feature}; labels must be integer class ids",
        )
    if split.shards is None:  # map-style: the two columns, images decoded (a sharded split's rows are)
        rows = split.rows.select_columns([image_column, label_column])
        if not _is_decoded_image(image_feature):
            rows = rows.cast_column(image_column, datasets.Image())
        split = Split(split.name, rows, rows.features)
    labels = split.label_range(label_column)
    if labels is not None:
        check_labels(*labels, name, num_classes)
    return split


def check_labels(low: int, high: int, missing: int, split: str, num_classes: int | None) -> None:
    """RecipeError for labels missing, negative or past the model's classes."""
    if missing:
        raise RecipeError("data.label_column", f"split {split!r} has {missing} examples without a label")
    if num_classes and low < 0:
        raise RecipeError(
            "data.label_column",
            f"split {split!r} has negative labels (min {low}); labels must be 0..{num_classes - 1}",
        )
    if num_classes and high >= num_classes:
        raise RecipeError(
            "data.label_column",
            f"split {split!r} has labels up to {high}, but the model has num_classes = {num_classes}"
            f" (labels must be 0..{num_classes - 1}); set model.num_classes = {high + 1} or more",
        )


def hold_out(train: Split, fraction: float, label_column: str, seed: int) -> tuple[Split, Split]:
    """Seeded split holding out round(`fraction` x class size) of every class of train for eval."""
    labels = train.rows.with_format("arrow")[label_column].to_numpy()
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
    kept = train.rows.select(np.sort(order[~held_out]), keep_in_memory=True)
    held = train.rows.select(np.sort(order[held_out]), keep_in_memory=True)
    return Split(train.name, kept, kept.features), Split("held-out", held, held.features)


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
