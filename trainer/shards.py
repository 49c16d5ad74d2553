"""Shards on a local or shared filesystem: parquet files and WebDataset .tar files found by split, counted
from their metadata (no image is read), read one row at a time where a stream needs it, and written from an
image folder or an annotation file (`scripts/prepare_data.py`).

A split's shards are its files in sorted name order; a row's global index is its running number through
them (the rows of the first file, then the second's, ...). `trainer.streaming` seeds each row's
augmentation from it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trainer.errors import RecipeError, did_you_mean
from trainer.folder import SPLIT_DIRS, annotation_dataset, folder_dataset_dict

SHARD_FORMATS = {".parquet": "parquet", ".tar": "webdataset"}
"""Shard file suffix -> the `datasets` builder that streams it."""
ROW_GROUP_SIZE = 100
"""Rows per parquet row group written by prepare (datasets' choice for image data): reading one row reads
at most this many images."""
_SEP = r"[-._ 0-9/]"


@dataclass(frozen=True)
class Shards:
    """One split's shard files (sorted), their format and row counts."""

    files: tuple[str, ...]
    fmt: str
    rows: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.rows)

    @property
    def offsets(self) -> tuple[int, ...]:
        """The global index of each shard's first row."""
        return tuple(int(x) for x in np.cumsum((0, *self.rows[:-1])))

    def locate(self, row: int) -> tuple[int, int]:
        """(shard number, row within it) of global row `row`."""
        if not 0 <= row < self.total:
            raise IndexError(f"row {row} is outside the {self.total} rows of the shards")
        shard = int(np.searchsorted(np.cumsum(self.rows), row, side="right"))
        return shard, row - self.offsets[shard]

    def read_row(self, row: int, columns: Sequence[str]) -> dict[str, Any]:
        """Global row `row`'s `columns`, undecoded (images as {bytes, path}), read from its shard alone."""
        shard, local = self.locate(row)
        if self.fmt == "parquet":
            return _parquet_row(self.files[shard], local, columns)
        return _tar_row(self.files[shard], local, columns)


def find_shards(path: str, fmt: str) -> tuple[str, dict[str, list[str]]]:
    """The shard format and the sorted shard files of each split at `path`: a shard file, a glob, or a
    directory (shards up to two levels down). A file's split is the split keyword in its name or folder
    below `path` (`train-00000-of-00008.parquet`, `val/shard-0.tar`), else "train"; a file or glob naming
    one split's shards names the train split (as map-style parquet paths do). RecipeError when nothing
    matches."""
    suffixes = [s for s, f in SHARD_FORMATS.items() if fmt in ("auto", f)]
    local = Path(path).expanduser()
    if glob.has_magic(path):
        files = sorted(glob.glob(str(local), recursive=True))
        if not files:
            raise RecipeError("data.path", f"no file matches {path!r} (relative to {os.getcwd()})")
        first_magic = next(i for i, part in enumerate(local.parts) if glob.has_magic(part))
        base = Path(*local.parts[:first_magic]) if first_magic else Path(".")  # split keywords count below
    elif local.is_file():
        files, base = [str(local)], None
    elif local.is_dir():
        files = sorted(
            str(p) for depth in range(3) for s in suffixes for p in local.glob(f"{'*/' * depth}*{s}")
        )
        base = local
    else:
        raise RecipeError("data.path", f"no such file or directory: {path!r} (relative to {os.getcwd()})")
    files = [f for f in files if not os.path.basename(f).startswith((".", "__"))]
    shard_files = [f for f in files if Path(f).suffix in suffixes]
    what = " or ".join(suffixes)
    if not shard_files:
        where = f"in {path!r}" if local.is_dir() else f"among the {len(files)} file(s) {path!r} names"
        raise RecipeError("data.path", f"no {what} shards {where} (data.streaming reads {what} shards)")
    formats = {SHARD_FORMATS[Path(f).suffix] for f in shard_files}
    if len(formats) > 1:
        raise RecipeError("data.format", f"{path!r} holds both parquet and .tar shards; set data.format")
    by_split: dict[str, list[str]] = {}
    for file in shard_files:
        name = os.path.relpath(file, base) if base is not None else os.path.basename(file)
        by_split.setdefault(split_of(name) or "train", []).append(file)
    if len(by_split) == 1 and not local.is_dir():  # a file or glob of one split's shards: the train split,
        by_split = {"train": shard_files}  # as map-style data.path reads it
    return formats.pop(), {split: sorted(files) for split, files in by_split.items()}


def split_of(name: str) -> str | None:
    """The split a shard's relative path names ("train", "validation", "test"), else None."""
    for split, keywords in SPLIT_DIRS.items():
        for keyword in (split, *keywords):
            if re.search(rf"(^|{_SEP}){keyword}{_SEP}", name.lower()):
                return split
    return None


def pick_split(splits: dict[str, list[str]], name: str, key: str, path: str, hint: str = "") -> list[str]:
    """The files of split `name`; RecipeError naming the splits there are."""
    if name in splits:
        return splits[name]
    available = ", ".join(splits)
    raise RecipeError(
        key,
        f"no split {name!r}{did_you_mean(name, splits)} among the shards of {path!r}"
        f" (available: {available}){hint}",
    )


def count_rows(files: Sequence[str], fmt: str) -> Shards:
    """The split's shards with their row counts: parquet footers, or .tar headers (cached per file)."""
    rows = [parquet_meta(f).num_rows if fmt == "parquet" else _tar_samples(f) for f in files]
    return Shards(tuple(files), fmt, tuple(rows))


def parquet_meta(file: str) -> Any:
    """A parquet file's footer (row counts, schema, column statistics); RecipeError if it is unreadable."""
    try:
        return pq.ParquetFile(file).metadata
    except (OSError, pa.ArrowInvalid) as err:
        raise RecipeError("data.path", f"cannot read shard {file!r}: {type(err).__name__}: {err}") from None


def parquet_column_range(files: Sequence[str], column: str) -> tuple[int, int, int] | None:
    """(min, max, nulls) of an integer column over the files, from the row groups' statistics (the footers
    only); None where a row group has no statistics."""
    low, high, nulls = None, None, 0
    for file in files:
        meta = parquet_meta(file)
        names = [meta.schema.column(i).path for i in range(meta.num_columns)]
        if column not in names:
            return None
        index = names.index(column)
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(index).statistics
            if meta.row_group(group).num_rows == 0:
                continue
            if stats is None or not stats.has_min_max or stats.null_count is None:
                return None
            low = stats.min if low is None else min(low, stats.min)
            high = stats.max if high is None else max(high, stats.max)
            nulls += stats.null_count
    return None if low is None else (int(low), int(high), nulls)


def iter_rows(file: str, fmt: str, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """A shard's rows in file order, `columns` only, undecoded: images as {bytes, path}."""
    if fmt == "parquet":
        for batch in pq.ParquetFile(file).iter_batches(batch_size=ROW_GROUP_SIZE, columns=list(columns)):
            yield from batch.to_pylist()
    else:
        yield from _tar_samples_of(file, columns)


def _parquet_row(file: str, local: int, columns: Sequence[str]) -> dict[str, Any]:
    reader = pq.ParquetFile(file)
    start = 0
    for group in range(reader.metadata.num_row_groups):
        size = reader.metadata.row_group(group).num_rows
        if local < start + size:
            table = reader.read_row_group(group, columns=list(columns))
            return table.slice(local - start, 1).to_pylist()[0]
        start += size
    raise IndexError(f"{file!r} has no row {local}")


def _tar_members(file: str) -> Iterator[tuple[tarfile.TarFile, str, tarfile.TarInfo]]:
    """(tar, sample key, member) of every regular, non-hidden file in a .tar, as datasets' WebDataset
    reads them; a sample is a run of members sharing a key."""
    from datasets.packaged_modules.webdataset.webdataset import base_plus_ext

    with tarfile.open(file, "r:") as tar:
        for info in tar:
            if not info.isreg() or os.path.basename(info.name).startswith((".", "__")):
                continue
            key, _ = base_plus_ext(info.name)
            if key is not None:
                yield tar, key, info
            tar.members = []  # headers only: keep memory flat on large shards


def _tar_samples(file: str) -> int:
    """Samples in a .tar, from its headers; cached by path, size and mtime."""
    import datasets

    try:
        stat = os.stat(file)
    except OSError as err:
        raise RecipeError("data.path", f"cannot read shard {file!r}: {err}") from None
    digest = hashlib.sha1(os.path.abspath(file).encode()).hexdigest()[:20]
    cache = Path(datasets.config.HF_DATASETS_CACHE) / "trainer_shard_rows" / f"{digest}.json"
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in stamp} == stamp:
            return int(cached["rows"])
    except (OSError, ValueError, KeyError):
        pass
    count, last = 0, None
    try:
        for _, key, _ in _tar_members(file):
            if key != last:
                count, last = count + 1, key
    except (OSError, tarfile.TarError) as err:
        raise RecipeError("data.path", f"cannot read shard {file!r}: {type(err).__name__}: {err}") from None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({**stamp, "rows": count}))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs the count next time
    return count


def _tar_samples_of(file: str, columns: Sequence[str], only: int | None = None) -> Iterator[dict[str, Any]]:
    """The samples of a .tar (or sample `only` alone), `columns` decoded as datasets' WebDataset does:
    images {bytes, path}, "cls" and the like ints; a column the sample lacks is None. Members of other
    columns, and of other samples than `only`, are skipped unread."""
    from datasets.packaged_modules.webdataset.webdataset import WebDataset

    number, last, found = -1, None, None
    for tar, key, info in _tar_members(file):
        if key != last:
            if found is not None:
                yield {column: found.get(column) for column in columns}
                if only is not None:
                    return
            number, last = number + 1, key
            found = {} if only is None or number == only else None
        field = info.name[len(key) + 1 :]
        if found is None or field not in columns:
            continue
        data = tar.extractfile(info).read()
        extension = field.rsplit(".", 1)[-1].lower()
        if extension in WebDataset.IMAGE_EXTENSIONS:
            found[field] = {"bytes": data, "path": f"{os.path.basename(key)}.{field}"}
        elif extension in WebDataset.DECODERS:
            found[field] = WebDataset.DECODERS[extension](data)
        else:
            found[field] = data
    if found is not None:
        yield {column: found.get(column) for column in columns}


def _tar_row(file: str, local: int, columns: Sequence[str]) -> dict[str, Any]:
    for row in _tar_samples_of(file, columns, only=local):
        return row
    raise IndexError(f"{file!r} has no sample {local}")


# --- writing: scripts/prepare_data.py -------------------------------------------------------------------


class PrepareError(Exception):
    """Bad input to prepare_data.py: said in one line, exit code 2."""


def source_splits(
    src: str, *, ann_file: str | None = None, data_prefix: str = "", split: str | None = None
) -> dict[str, Any]:
    """The Datasets to write: every split of an image-folder tree (or the `split`s asked for), or the one
    split of an annotation file (named `split`, default "train")."""
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
