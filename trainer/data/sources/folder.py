"""An image folder: `<class>/<image>` trees (timm's and torchvision's ImageFolder convention), with split
folders (`train/`, `val/`, ...) as splits; listed once and kept as an index (trainer.data.sources.index)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from trainer.data.sources.base import DatasetDictSource, local_path
from trainer.data.sources.index import Listing, cached_listing
from trainer.errors import RecipeError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)
SPLIT_DIRS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}
"""Split folder names, as datasets' imagefolder recognizes them."""


class FolderSource(DatasetDictSource):
    format = "imagefolder"

    def load(self) -> Any:
        splits = folder_dataset_dict(local_path(self.cfg))
        for name, split in splits.items():
            warn_empty_classes(split, f"{self.cfg.path}: split {name!r}")
        return splits


def warn_empty_classes(split: Any, where: str) -> None:
    """One warning line per class folder without an image: legal, but its label can never be learned."""
    import numpy as np

    names = split.features["label"].names
    counts = np.bincount(split.with_format("arrow")["label"].to_numpy(), minlength=len(names))
    empty = [name for name, count in zip(names, counts, strict=True) if count == 0]
    if empty and int(os.environ.get("RANK", "0")) == 0:
        listed = ", ".join(repr(n) for n in empty[:5]) + (f", ... ({len(empty)})" if len(empty) > 5 else "")
        print(
            f"data warning: {where}: class folder(s) {listed} hold no image; their labels are never seen",
            file=sys.stderr,
            flush=True,
        )


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
        splits[split] = cached_listing(folder, lambda folder=folder: list_class_folders(folder))
        if len(splits[split]) == 0:
            raise RecipeError(
                "data.path",
                f"cannot load {str(folder)!r} as imagefolder: no images in <class>/<image> folders",
            )
    return datasets.DatasetDict(splits)
