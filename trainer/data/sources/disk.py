"""A dataset written by `save_to_disk` (a DatasetDict, or one Dataset: the "train" split)."""

from __future__ import annotations

from typing import Any

from trainer.data.sources.base import DatasetDictSource, local_path


class DiskSource(DatasetDictSource):
    format = "disk"
    uses_cache = False

    def load(self) -> Any:
        import datasets

        return datasets.load_from_disk(local_path(self.cfg))
