"""Image folders and annotation files as `datasets` Datasets that start in seconds at ImageNet scale.

`datasets.load_dataset("imagefolder")` opens and fingerprints every file on every start (about 2 ms a file:
more than half an hour for ImageNet). Here a class-folder tree is listed once with `os.scandir` (as fast as
timm's scan), the list of (path, label) is kept as an Arrow file in the datasets cache, and a later start,
or another process, memory-maps it after checking the modification times of the tree's directories (adding,
removing or renaming a file changes its directory's). No image is opened until it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from trainer.errors import RecipeError

INDEX_VERSION = 1
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)
SPLIT_DIRS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}
"""Split folder names, as datasets' imagefolder recognizes them."""


@dataclass
class Listing:
    """One split of a folder tree: relative image paths, their labels, the class names, and the
    modification time of every directory read (the cache's validity check)."""

    paths: list[str]
    labels: list[int]
    classes: list[str]
    dir_mtimes: dict[str, int]


def list_class_folders(root: Path) -> Listing:
    """Every image under `root/<class>/...` (any depth below the class folder), sorted, labelled by its
    class folder in sorted order (timm's and torchvision's ImageFolder convention)."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    paths: list[str] = []
    labels: list[int] = []
    mtimes = {".": root.stat().st_mtime_ns}
    for label, name in enumerate(classes):
        found: list[str] = []
        _scan(root, name, found, mtimes)
        found.sort()
        paths.extend(found)
        labels.extend([label] * len(found))
    return Listing(paths, labels, classes, mtimes)


def _scan(root: Path, relative: str, found: list[str], mtimes: dict[str, int]) -> None:
    folder = os.path.join(root, relative)
    mtimes[relative] = os.stat(folder).st_mtime_ns
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                _scan(root, f"{relative}/{entry.name}", found, mtimes)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(f"{relative}/{entry.name}")


def split_folders(root: Path) -> dict[str, Path]:
    """{"train": root/train, "validation": root/val, ...} where `root` has split folders, else
    {"train": root}."""
    names = {e.name.lower(): e.name for e in os.scandir(root) if e.is_dir()}
    found = {}
    for split, aliases in SPLIT_DIRS.items():
        for alias in aliases:
            if alias in names:
                found[split] = root / names[alias]
                break
    return found or {"train": root}


def folder_dataset_dict(root: str | Path) -> Any:
    """The image-folder tree at `root` as a DatasetDict (columns `image`, `label` with class names),
    from the cached index when the tree has not changed."""
    import datasets

    root = Path(root).expanduser().resolve()
    splits = {}
    for split, folder in split_folders(root).items():
        splits[split] = _cached(folder, lambda folder=folder: list_class_folders(folder))
        if len(splits[split]) == 0:
            raise RecipeError(
                "data.path",
                f"cannot load {str(folder)!r} as imagefolder: no images in <class>/<image> folders",
            )
    return datasets.DatasetDict(splits)


def annotation_dataset(data_root: str | Path, ann_file: str, data_prefix: str, key: str) -> Any:
    """MMPretrain's layout: `ann_file` (relative to `data_root`) lists `relative/path label` per line, paths
    relative to `data_root/data_prefix`; a Dataset with `image` and integer `label` columns."""
    root = Path(data_root).expanduser().resolve()
    ann = root / ann_file
    if not ann.is_file():
        raise RecipeError(key, f"no such annotation file: {str(ann)!r}")
    return _cached(
        ann, lambda: _read_annotations(ann, root / data_prefix, key), image_root=root / data_prefix
    )


def _read_annotations(ann: Path, image_root: Path, key: str) -> Listing:
    paths, labels = [], []
    with ann.open() as f:
        for number, line in enumerate(f, start=1):
            parts = line.rsplit(maxsplit=1)
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise RecipeError(
                    key, f"{ann.name} line {number}: expected 'relative/path label', got {line.strip()!r}"
                )
            paths.append(parts[0])
            labels.append(int(parts[1]))
    if not paths:
        raise RecipeError(key, f"{str(ann)!r} lists no images")
    first_missing = next((p for p in paths[:1] + paths[-1:] if not (image_root / p).is_file()), None)
    if first_missing is not None:
        raise RecipeError(
            key, f"{ann.name} names {first_missing!r}, which is not a file under {str(image_root)!r}"
        )
    mtimes = {".": ann.stat().st_mtime_ns}
    return Listing(paths, labels, [], mtimes)


def _cached(source: Path, listing: Any, image_root: Path | None = None) -> Any:
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
