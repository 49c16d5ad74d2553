"""A listing of (image path, label) kept as an Arrow file in the datasets cache, so that an image folder or an
annotation file starts in seconds at ImageNet scale.

`datasets.load_dataset("imagefolder")` opens and fingerprints every file on every start (about 2 ms a file:
more than half an hour for ImageNet). Here a tree is listed once (as fast as timm's scan), the list is kept as
an Arrow file, and a later start, or another process, memory-maps it after checking the modification times
of the directories read (adding, removing or renaming a file changes its directory's) or of the annotation
file. No image is opened until it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

INDEX_VERSION = 1


@dataclass
class Listing:
    """One split of a folder tree: relative image paths, their labels, the class names, and the
    modification time of every directory read (the cache's validity check)."""

    paths: list[str]
    labels: list[int]
    classes: list[str]
    dir_mtimes: dict[str, int]


def cached_listing(source: Path, listing: Callable[[], Listing], image_root: Path | None = None) -> Any:
    """The Dataset of `listing()` for `source`, from an Arrow file in the datasets cache when the directory
    (or annotation file) modification times recorded with it still hold; else list again and cache."""
    import datasets

    image_root = image_root or source
    cache = _cache_dir(source)
    meta_file, arrow_file = cache / "meta.json", cache / "index.arrow"
    meta = _read_meta(meta_file)
    if meta is None or not _unchanged(source, meta):
        found: Listing = listing()
        meta = {
            "version": INDEX_VERSION,
            "source": str(source),
            "classes": found.classes,
            "dir_mtimes": found.dir_mtimes,
            "rows": len(found.paths),
        }
        _write_index(arrow_file, meta_file, found, image_root, meta)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=meta["classes"])
            if meta["classes"]
            else datasets.Value("int64"),
        }
    )
    return datasets.Dataset.from_file(str(arrow_file), info=datasets.DatasetInfo(features=features))


def _cache_dir(source: Path) -> Path:
    import datasets

    digest = hashlib.sha1(str(source).encode()).hexdigest()[:16]
    return Path(datasets.config.HF_DATASETS_CACHE) / "trainer_index" / f"{source.name}-{digest}"


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("version") == INDEX_VERSION and (path.parent / "index.arrow").is_file() else None


def _unchanged(source: Path, meta: dict[str, Any]) -> bool:
    """Every directory (or the annotation file) listed has the modification time it had when indexed."""
    base = source if source.is_dir() else source.parent
    for relative, mtime in meta["dir_mtimes"].items():
        path = source if relative == "." else base / relative
        try:
            if path.stat().st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    return True


def _write_index(arrow_file: Path, meta_file: Path, found: Listing, image_root: Path, meta: dict) -> None:
    """The (image, label) table as datasets stores an Image column ({bytes: null, path}), written to a
    temporary file and renamed, so a process reading the cache never sees half an index."""
    arrow_file.parent.mkdir(parents=True, exist_ok=True)
    prefix = str(image_root) + os.sep
    image = pa.StructArray.from_arrays(
        [pa.nulls(len(found.paths), pa.binary()), pa.array([prefix + p for p in found.paths], pa.string())],
        names=["bytes", "path"],
    )
    table = pa.table({"image": image, "label": pa.array(found.labels, pa.int64())})
    tmp = arrow_file.with_suffix(f".tmp{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=100_000)
    os.replace(tmp, arrow_file)
    tmp_meta = meta_file.with_suffix(f".tmp{os.getpid()}")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, meta_file)
