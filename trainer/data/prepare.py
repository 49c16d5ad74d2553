"""Writing parquet shards from an image folder, an annotation file or parquet files
(`scripts/prepare_data.py`): shuffled rows, shards of equal size (every process and data worker then reads as
much), images as their encoded bytes, labels with their class names."""

from __future__ import annotations

import glob
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trainer.data.options import data_config, quiet_progress_bars
from trainer.data.sources import detect_format
from trainer.data.sources.annotations import annotation_dataset
from trainer.data.sources.folder import folder_dataset_dict
from trainer.data.sources.parquet import ParquetSource, split_of
from trainer.data.sources.shards import ROW_GROUP_SIZE
from trainer.data.splits import check_split
from trainer.errors import RecipeError, did_you_mean

PARQUET_KEYS = {
    "data.image_column": "--image-column",
    "data.label_column": "--label-column",
    "data.train_split": "SRC",
    "data.path": "SRC",
}
"""The recipe keys a parquet source's checks blame, as prepare_data.py's arguments."""


class PrepareError(Exception):
    """Bad input to prepare_data.py: said in one line, exit code 2."""


def is_parquet_input(src: str) -> bool:
    """Whether `src` names parquet data: a .parquet file, a glob, or a directory holding parquet files (as
    `data.format = "auto"` detects them)."""
    path = Path(src).expanduser()
    if glob.has_magic(src) or path.suffix == ".parquet":
        return True
    try:
        return path.is_dir() and detect_format(src) == "parquet"
    except RecipeError as err:
        raise PrepareError(err.message) from None


def source_splits(
    src: str,
    *,
    ann_file: str | None = None,
    data_prefix: str = "",
    split: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
) -> dict[str, Any]:
    """The Datasets to write: every split of an image-folder tree or of a parquet folder (or the `split` asked
    for); the one split of an annotation file, or of parquet files of one split, is named `split` (default:
    the split a parquet file's name says, else "train")."""
    if ann_file is None and is_parquet_input(src):
        splits = parquet_splits(src, image_column, label_column, split)
        if len(splits) == 1 and not Path(src).expanduser().is_dir():
            return splits
    else:
        root = Path(src).expanduser()
        if not root.is_dir():
            raise PrepareError(f"no such directory: {src!r}")
        try:
            if ann_file is not None:
                return {split or "train": annotation_dataset(root, ann_file, data_prefix, "--ann-file")}
            splits = dict(folder_dataset_dict(root))
        except RecipeError as err:
            raise PrepareError(err.message) from None
    if split is not None:
        if split not in splits:
            available = ", ".join(splits)
            raise PrepareError(
                f"--split: {src!r} has no split {split!r}{did_you_mean(split, splits)}"
                f" (available: {available})"
            )
        splits = {split: splits[split]}
    return splits


def parquet_splits(
    src: str, image_column: str, label_column: str, split: str | None = None
) -> dict[str, Any]:
    """The splits of parquet data read by the recipe's parquet source (a file, a folder of split files or a
    glob) and checked as a recipe's splits are, as `image` and `label` columns (a ClassLabel keeps its
    names): every split, or `split` alone. Files of one split are named `split`, else the split their name
    says, else "train"."""
    renames = {old: new for old, new in ((image_column, "image"), (label_column, "label")) if old != new}
    try:
        columns = {"image_column": image_column, "label_column": label_column}
        cfg = data_config({"path": src, "format": "parquet", "batch_size": 1, **columns})
        source = ParquetSource(cfg)
        with quiet_progress_bars():
            names = {name: name for name in source.split_names()}
        if len(names) == 1 and not Path(src).expanduser().is_dir():
            first = sorted(glob.glob(src))[0] if glob.has_magic(src) else src
            names = {next(iter(names)): split or split_of(Path(first).name) or "train"}
        elif split in names:
            names = {split: split}
        splits = {}
        for name, written_as in names.items():
            named = cfg.model_copy(update={"train_split": written_as})  # what check_split's messages say
            splits[written_as] = check_split(source.split(name), named, "train", None).rows.rename_columns(
                renames
            )
    except RecipeError as err:
        argument = PARQUET_KEYS.get(err.key, err.key)
        raise PrepareError(f"{argument}: {err.message.splitlines()[0]}") from None
    return splits


def shard_sizes(rows: int, *, shard_size: int | None = None, num_shards: int | None = None) -> list[int]:
    """Rows per shard, as even as possible (sizes differ by at most one): `num_shards` shards, or as few as
    keep each within `shard_size` rows. Even shards let every process and data worker read as much."""
    count = num_shards if num_shards is not None else max(1, math.ceil(rows / (shard_size or 1000)))
    count = min(count, rows)
    base, extra = divmod(rows, count)
    return [base + 1] * extra + [base] * (count - extra)


def write_parquet_shards(
    dataset: Any,
    out_dir: str | Path,
    split: str,
    *,
    shard_size: int | None = None,
    num_shards: int | None = None,
    seed: int | None = 0,
    overwrite: bool = False,
    image_root: str | Path | None = None,
) -> list[Path]:
    """Write `dataset` (image and label columns; images as files or bytes) as parquet shards
    `split-00000-of-0000N.parquet` in `out_dir`: images as their encoded bytes in datasets' Image struct
    (path relative to `image_root`), labels with their ClassLabel names, rows shuffled with `seed` (None
    keeps the order), ROW_GROUP_SIZE rows per row group. Each file is written under a hidden name and renamed
    when complete; existing shards of the split are an error unless `overwrite`."""
    import datasets

    out = Path(out_dir).expanduser()
    pattern = re.compile(rf"^{re.escape(split)}-\d+-of-\d+\.parquet$")
    existing = sorted(p for p in out.iterdir() if pattern.match(p.name)) if out.is_dir() else []
    if existing and not overwrite:
        raise PrepareError(
            f"{str(out)!r} already has {len(existing)} {split} shard(s) ({existing[0].name}, ...);"
            " remove them or pass --overwrite"
        )
    table = dataset.with_format("arrow")[:]
    if len(table) == 0:
        raise PrepareError(f"split {split!r} has no rows")
    if "image" not in table.column_names or "label" not in table.column_names:
        raise PrepareError(f"split {split!r} needs 'image' and 'label' columns, has {table.column_names}")
    label = dataset.features["label"]
    features = datasets.Features({"image": datasets.Image(), "label": label})
    images = table.column("image").combine_chunks()
    paths, blobs = images.field("path").to_pylist(), images.field("bytes")
    labels = table.column("label").to_numpy()
    order = np.arange(len(table)) if seed is None else np.random.default_rng(seed).permutation(len(table))
    sizes = shard_sizes(len(table), shard_size=shard_size, num_shards=num_shards)
    out.mkdir(parents=True, exist_ok=True)
    root = str(Path(image_root).expanduser().resolve()) if image_root is not None else None
    written: list[Path] = []
    pending: Path | None = None
    try:
        start = 0
        for number, size in enumerate(sizes):
            final = out / f"{split}-{number:05d}-of-{len(sizes):05d}.parquet"
            pending = out / f".{final.name}.tmp{os.getpid()}"
            with pq.ParquetWriter(pending, features.arrow_schema) as writer:
                for first in range(start, start + size, ROW_GROUP_SIZE):
                    rows = order[first : min(first + ROW_GROUP_SIZE, start + size)]
                    image = [_encoded(paths[i], blobs[int(i)].as_py(), root) for i in rows]
                    chunk = pa.table({"image": image, "label": labels[rows]}, schema=features.arrow_schema)
                    writer.write_table(chunk, row_group_size=ROW_GROUP_SIZE)
            os.replace(pending, final)
            pending = None
            written.append(final)
            start += size
    finally:
        if pending is not None:
            pending.unlink(missing_ok=True)
    for stale in existing:
        if stale not in written:
            stale.unlink()
    return written


def _encoded(path: str | None, blob: bytes | None, root: str | None) -> dict[str, Any]:
    """An Image struct holding the file's bytes (read as they are: nothing is decoded or re-encoded)."""
    if blob is None:
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as err:
            raise PrepareError(f"cannot read image {path!r}: {err.strerror or err}") from None
    name = path
    if path is not None and root is not None and os.path.isabs(path):
        name = os.path.relpath(path, root)
    return {"bytes": blob, "path": name}
