"""Data sources: where a recipe's images come from. Each is one small module that reads `data.path` in one
format and gives its splits in one form, `Split` (rows with an image and an integer label, their number,
their label names and, for shards, the plan a stream reads); checks, seeded transforms, unreadable samples,
loaders and resume are written once against it (trainer.data.splits, trainer.data.loaders).

A new source is one module here: a class with `split_names()` and `split(name)` (`DatasetDictSource` does both
for anything `datasets` reads), listed in SOURCES under its `data.format` name.
"""

from __future__ import annotations

import glob
from pathlib import Path

from trainer.data.schema import DataCfg
from trainer.data.sources.annotations import AnnotationSource
from trainer.data.sources.base import DatasetDictSource, Source, Split, path_exists
from trainer.data.sources.disk import DiskSource
from trainer.data.sources.folder import FolderSource
from trainer.data.sources.hub import HUB_NAME, HubSource
from trainer.data.sources.parquet import ParquetSource
from trainer.data.sources.shards import ShardSource
from trainer.errors import RecipeError

SOURCES: dict[str, type] = {
    "hub": HubSource,
    "disk": DiskSource,
    "imagefolder": FolderSource,
    "annotations": AnnotationSource,
    "parquet": ParquetSource,
}
"""`data.format` -> the source that reads it, map-style; `data.streaming` reads shards (ShardSource)."""

__all__ = ["SOURCES", "DatasetDictSource", "ShardSource", "Source", "Split", "detect_format", "open_source"]


def open_source(cfg: DataCfg) -> Source:
    """The source `[data]` names: shards with `data.streaming`, MMPretrain's annotation files with
    `data.ann_file`, else `data.format` (detected from `data.path` when "auto")."""
    if not glob.has_magic(cfg.path):
        path_exists(cfg.path)  # a path the file system refuses to look up is one line, here
    if cfg.streaming:
        return ShardSource(cfg)
    if cfg.ann_file is not None:
        return AnnotationSource(cfg)
    fmt = detect_format(cfg.path) if cfg.format == "auto" else cfg.format
    if cfg.name is not None and fmt != "hub":
        raise RecipeError("data.name", f"is a hub config name, but {cfg.path!r} is a local {fmt} dataset")
    return SOURCES[fmt](cfg)


def detect_format(path: str) -> str:
    """The dataset format a `data.path` points at: "disk", "parquet", "imagefolder" or "hub"."""
    import os

    if glob.has_magic(path):
        return "parquet"
    local = Path(path).expanduser()
    if not path_exists(path) and HUB_NAME.match(path):
        return "hub"
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
    if HUB_NAME.match(path):
        return "hub"
    raise RecipeError("data.path", f"no such file or directory: {path!r} (relative to {os.getcwd()})")
