"""Parquet files read map-style into the datasets cache: a directory (datasets' split inference), one file, or
a glob (files grouped into splits by the keywords in their names)."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

from trainer.data.sources.base import DatasetDictSource, local_path
from trainer.errors import RecipeError

SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SEP = r"[-._ 0-9/]"


class ParquetSource(DatasetDictSource):
    format = "parquet"

    def load(self) -> Any:
        import datasets

        path = self.cfg.path
        local = path if glob.has_magic(path) else local_path(self.cfg)
        return datasets.load_dataset("parquet", **parquet_files(str(Path(local).expanduser())))


def parquet_files(path: str) -> dict[str, Any]:
    """load_dataset("parquet") arguments: a directory keeps datasets' split inference; files are grouped
    into splits by the same filename keywords (train/validation/test), else all are "train"."""
    if Path(path).is_dir():
        return {"data_dir": path}
    files = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else [path]
    if not files:
        raise RecipeError("data.path", f"no file matches {path!r} (relative to {os.getcwd()})")
    by_split: dict[str, list[str]] = {}
    for file in files:
        by_split.setdefault(split_of(os.path.basename(file)) or "train", []).append(file)
    if len(by_split) == 1:
        return {"data_files": {"train": files}}
    return {"data_files": by_split}


def split_of(filename: str) -> str | None:
    """The split a parquet file's name names (`train.parquet`, `val-0.parquet`), else None."""
    for split, keywords in SPLIT_KEYWORDS.items():
        for keyword in keywords:
            if re.search(rf"(^|{_SEP}){keyword}{_SEP}", filename):
                return split
    return None
