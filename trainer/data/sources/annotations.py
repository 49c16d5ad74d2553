"""MMPretrain's annotation files: `relative/path label` per line (ImageNet's meta/train.txt), image paths
relative to `data.path/data_prefix`; the train split from `data.ann_file`, the eval split from
`data.eval_ann_file`. Listed once and kept as an index (trainer.data.sources.index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.data.sources.base import DatasetDictSource
from trainer.data.sources.index import Listing, cached_listing
from trainer.errors import RecipeError


class AnnotationSource(DatasetDictSource):
    format = "annotations"

    def load(self) -> Any:
        import datasets

        cfg = self.cfg
        if cfg.ann_file is None:
            raise RecipeError("data.ann_file", "is required with data.format = 'annotations'")
        if not Path(cfg.path).expanduser().is_dir():
            raise RecipeError(
                "data.path", f"no such directory: {cfg.path!r} (the data root of data.ann_file)"
            )
        splits = {
            cfg.train_split: annotation_dataset(cfg.path, cfg.ann_file, cfg.data_prefix, "data.ann_file")
        }
        if cfg.eval_ann_file is not None:
            splits[cfg.eval_split] = annotation_dataset(
                cfg.path, cfg.eval_ann_file, cfg.eval_data_prefix, "data.eval_ann_file"
            )
        return datasets.DatasetDict(splits)


def annotation_dataset(data_root: str | Path, ann_file: str, data_prefix: str, key: str) -> Any:
    """MMPretrain's layout: `ann_file` (relative to `data_root`) lists `relative/path label` per line, paths
    relative to `data_root/data_prefix`; a Dataset with `image` and integer `label` columns."""
    root = Path(data_root).expanduser().resolve()
    ann = root / ann_file
    if not ann.is_file():
        raise RecipeError(key, f"no such annotation file: {str(ann)!r}")
    return cached_listing(
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
