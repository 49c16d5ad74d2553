"""Shards on a local or shared filesystem (`data.streaming`): parquet files and WebDataset .tar files found by
split, counted from their metadata (no image is read), and read by global row (`ShardReader`: a streamed
epoch reads them block by block, in the global order of trainer.data.order).

A split's shards are its files in sorted name order; a row's global index is its running number through
them (the rows of the first file, then the second's, ...); each row's augmentation is seeded from it.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
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

from trainer.data.schema import DataCfg
from trainer.data.sources.base import Split, check_cache_writable
from trainer.data.sources.folder import SPLIT_DIRS
from trainer.errors import RecipeError, did_you_mean

SHARD_FORMATS = {".parquet": "parquet", ".tar": "webdataset"}
"""Shard file suffix -> the `datasets` builder that streams it."""
ROW_GROUP_SIZE = 100
"""Rows per parquet row group written by prepare (datasets' choice for image data): reading one row reads
at most this many images."""
TAR_BLOCK = 1000
"""Samples of a .tar shuffled together in a streamed epoch (each is read at its own offset)."""
_SEP = r"[-._ 0-9/]"


@dataclass(frozen=True)
class Shards:
    """One split's shard files (sorted), their format, row counts and blocks: the rows read together (a
    parquet row group; TAR_BLOCK samples of a .tar), the unit a streamed epoch shuffles and reads."""

    files: tuple[str, ...]
    fmt: str
    rows: tuple[int, ...]
    blocks: tuple[tuple[int, ...], ...] = ()
    """Rows per block, per shard."""

    @functools.cached_property
    def total(self) -> int:
        return sum(self.rows)

    @functools.cached_property
    def offsets(self) -> tuple[int, ...]:
        """The global index of each shard's first row (computed once: `locate` runs for every row read)."""
        return tuple(int(x) for x in np.cumsum((0, *self.rows[:-1])))

    @functools.cached_property
    def _ends(self) -> np.ndarray:
        return np.cumsum(self.rows)

    @functools.cached_property
    def block_starts(self) -> tuple[np.ndarray, ...]:
        """Per shard, the row within it at which each block starts."""
        return tuple(np.cumsum((0, *sizes[:-1])) for sizes in self.blocks)

    def locate(self, row: int) -> tuple[int, int]:
        """(shard number, row within it) of global row `row`."""
        if not 0 <= row < self.total:
            raise IndexError(f"row {row} is outside the {self.total} rows of the shards")
        shard = int(np.searchsorted(self._ends, row, side="right"))
        return shard, row - self.offsets[shard]

    def column_range(self, column: str) -> tuple[int, int, int] | None:
        """(min, max, missing) of an integer column from the parquet footers' statistics; None for .tar shards
        or where a row group has no statistics."""
        return parquet_column_range(self.files, column) if self.fmt == "parquet" else None

    def load(self, split: str, columns: list[str]) -> Split:
        """The shards read map-style into the datasets cache once (the eval split of a streamed run),
        `columns` only."""
        import datasets

        check_cache_writable()
        options = {"columns": list(columns)} if self.fmt == "parquet" else {}
        try:
            ds = datasets.load_dataset(self.fmt, data_files={split: list(self.files)}, split=split, **options)
        except Exception as err:  # datasets raises many types for unreadable shards; all are the data's
            raise RecipeError(
                "data.path", f"cannot load the {split} shards: {type(err).__name__}: {err}"
            ) from None
        return Split(split, ds, ds.features)


class ShardReader:
    """Rows by global index, read from their shards: a parquet row's whole row group is read once and kept
    (the next rows of a block come from memory), a .tar sample is read at its offset (an index of the
    members, made once per file). Each process (data worker) keeps its own open files and blocks."""

    KEPT_BLOCKS = 4

    def __init__(self, shards: Shards, columns: Sequence[str]) -> None:
        self.shards, self.columns = shards, list(columns)
        self._pid, self._files, self._blocks, self._tar = -1, {}, {}, {}

    def __getstate__(self) -> dict[str, Any]:  # a data worker opens its own files
        return {"shards": self.shards, "columns": self.columns}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["shards"], state["columns"])

    def _own(self) -> None:
        if self._pid != os.getpid():  # a forked worker: never share the parent's open files
            self._pid, self._files, self._blocks, self._tar = os.getpid(), {}, {}, {}

    def read(self, row: int) -> dict[str, Any]:
        """Global row `row`'s columns, undecoded (images as {bytes, path})."""
        self._own()
        shard, local = self.shards.locate(row)
        if self.shards.fmt == "parquet":
            return self._parquet(shard, local)
        index = self._tar.get(shard)
        if index is None:
            index = self._tar[shard] = tar_index(self.shards.files[shard])
        return _tar_sample(self.shards.files[shard], index[local], self.columns)

    def _parquet(self, shard: int, local: int) -> dict[str, Any]:
        starts = self.shards.block_starts[shard]
        group = int(np.searchsorted(starts, local, side="right")) - 1
        key = (shard, group)
        rows = self._blocks.pop(key, None)
        if rows is None:
            reader = self._files.get(shard)
            if reader is None:
                reader = self._files[shard] = pq.ParquetFile(self.shards.files[shard])
            rows = reader.read_row_group(group, columns=self.columns).to_pylist()
            while len(self._blocks) >= self.KEPT_BLOCKS:
                self._blocks.pop(next(iter(self._blocks)))
        self._blocks[key] = rows  # the most recent last
        return rows[local - int(starts[group])]


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
    """The split's shards with their row counts and blocks: parquet footers (row groups), or .tar headers
    (cached per file; blocks of TAR_BLOCK samples)."""
    rows, blocks = [], []
    for file in files:
        if fmt == "parquet":
            meta = parquet_meta(file)
            groups = tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
            rows.append(meta.num_rows)
            blocks.append(tuple(g for g in groups if g) or (0,))
        else:
            count = len(tar_index(file))
            rows.append(count)
            blocks.append(tuple(min(TAR_BLOCK, count - s) for s in range(0, count, TAR_BLOCK)) or (0,))
    return Shards(tuple(files), fmt, tuple(rows), tuple(blocks))


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


def tar_index(file: str) -> list[dict[str, list[int]]]:
    """Per sample of a .tar (a run of members sharing a key, as datasets' WebDataset reads them): each
    field's [data offset, size, name] in the file; from its headers once, then cached by path, size and
    mtime in the datasets cache."""
    import datasets

    try:
        stat = os.stat(file)
    except OSError as err:
        raise RecipeError("data.path", f"cannot read shard {file!r}: {err}") from None
    digest = hashlib.sha1(os.path.abspath(file).encode()).hexdigest()[:20]
    cache = Path(datasets.config.HF_DATASETS_CACHE) / "trainer_shard_index" / f"{digest}.json"
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in stamp} == stamp:
            return cached["samples"]
    except (OSError, ValueError, KeyError):
        pass
    samples: list[dict[str, list[Any]]] = []
    last = None
    try:
        for _, key, info in _tar_members(file):
            if key != last:
                samples.append({})
                last = key
            field = info.name[len(key) + 1 :]
            samples[-1][field] = [info.offset_data, info.size, f"{os.path.basename(key)}.{field}"]
    except (OSError, tarfile.TarError) as err:
        raise RecipeError("data.path", f"cannot read shard {file!r}: {type(err).__name__}: {err}") from None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({**stamp, "samples": samples}))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs the headers' read next time
    return samples


def _tar_sample(file: str, fields: dict[str, list[Any]], columns: Sequence[str]) -> dict[str, Any]:
    """A sample's `columns` read at their offsets, decoded as datasets' WebDataset does: images as
    {bytes, path}, "cls" and the like ints; a column the sample lacks is None."""
    from datasets.packaged_modules.webdataset.webdataset import WebDataset

    out: dict[str, Any] = {}
    with open(file, "rb") as f:
        for column in columns:
            if column not in fields:
                out[column] = None
                continue
            offset, size, name = fields[column]
            f.seek(offset)
            data = f.read(size)
            extension = column.rsplit(".", 1)[-1].lower()
            if extension in WebDataset.IMAGE_EXTENSIONS:
                out[column] = {"bytes": data, "path": name}
            elif extension in WebDataset.DECODERS:
                out[column] = WebDataset.DECODERS[extension](data)
            else:
                out[column] = data
    return out


class ShardSource:
    """The splits of a directory, file or glob of parquet or WebDataset shards, each a `Split` whose rows are
    read from their shards (`ShardRows`) and whose `shards` are what a stream reads."""

    format = "shards"

    def __init__(self, cfg: DataCfg) -> None:
        self.cfg = cfg
        self.fmt, self.files = find_shards(cfg.path, cfg.format)
        self.where = f" among the shards of {cfg.path!r}"

    def split_names(self) -> list[str]:
        return list(self.files)

    def split(self, name: str) -> Split:
        shards = count_rows(self.files[name], self.fmt)
        rows = ShardRows(shards, self.cfg.image_column, self.cfg.label_column)
        return Split(name, rows, shard_features(shards, name), shards=shards)


def shard_features(shards: Shards, split: str) -> Any:
    """A split's features: parquet's from the first shard's schema, WebDataset's inferred from its first
    samples (as datasets infers them)."""
    import datasets

    if shards.fmt == "parquet":
        return datasets.Features.from_arrow_schema(pq.read_schema(shards.files[0]))
    try:
        return datasets.load_dataset(
            "webdataset", data_files={split: [shards.files[0]]}, split=split, streaming=True
        ).features
    except Exception as err:  # a .tar that is no WebDataset shard
        raise RecipeError(
            "data.path", f"cannot read {shards.files[0]!r}: {type(err).__name__}: {err}"
        ) from None


class ShardRows:
    """The rows of a sharded split by global index, as `SeededTransform` and `BadSamples` index a Dataset,
    each read from its shard (`ShardReader`: a block at a time). Images are decoded on access."""

    def __init__(self, shards: Shards, image_column: str, label_column: str) -> None:
        self.shards = shards
        self.image_column = image_column
        self.column_names = [image_column, label_column]
        self.reader = ShardReader(shards, self.column_names)

    def __len__(self) -> int:
        return self.shards.total

    def raw(self, row: int) -> dict[str, Any]:
        raw = dict(self.reader.read(row))
        image = raw[self.image_column]
        if isinstance(image, bytes):  # a binary column: the Image struct the stream casts it to
            raw[self.image_column] = {"bytes": image, "path": None}
        elif isinstance(image, str):  # a column of file paths
            raw[self.image_column] = {"bytes": None, "path": image}
        return raw

    def example(self, row: int, columns: list[str], decode: bool = True) -> dict[str, Any]:
        raw = self.raw(row)
        out = {column: raw[column] for column in columns}
        if self.image_column in out:
            image = out[self.image_column]
            if decode:
                out[self.image_column] = _decode(image)
            elif isinstance(image, dict):
                shard, _ = self.shards.locate(row)
                where = os.path.basename(self.shards.files[shard])
                out[self.image_column] = {
                    **image,
                    "path": f"{image.get('path') or 'row ' + str(row)} in {where}",
                }
        return out

    def __getitem__(self, key: int | slice | list[int]) -> dict[str, Any]:
        if isinstance(key, int):
            return self.example(key, self.column_names)
        rows = range(len(self))[key] if isinstance(key, slice) else key
        examples = [self.example(int(row), self.column_names) for row in rows]
        return {column: [example[column] for example in examples] for column in self.column_names}

    def select_columns(self, columns: list[str]) -> _Columns:
        return _Columns(self, list(columns), decode=True)


class _Columns:
    """Some columns of ShardRows (what `BadSamples` and `describe` select); `cast_column(..., Image(decode=
    False))` gives the undecoded image with its path and shard."""

    def __init__(self, rows: ShardRows, columns: list[str], decode: bool) -> None:
        self.rows, self.column_names, self.decode = rows, columns, decode

    def cast_column(self, column: str, feature: Any) -> _Columns:
        return _Columns(self.rows, self.column_names, decode=getattr(feature, "decode", True))

    def __getitem__(self, row: int) -> dict[str, Any]:
        return self.rows.example(int(row), self.column_names, decode=self.decode)


def _decode(image: Any) -> Any:
    import datasets

    return datasets.Image().decode_example(image)
