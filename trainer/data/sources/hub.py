"""A dataset on the Hugging Face Hub (or in its cache when offline): `datasets.load_dataset(path, name)`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from trainer.data.sources.base import DatasetDictSource
from trainer.errors import RecipeError

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
"""What a hub dataset name looks like ("user/name" or "name")."""


class HubSource(DatasetDictSource):
    format = "hub"

    def load(self) -> Any:
        import datasets

        return datasets.load_dataset(self.cfg.path, name=self.cfg.name)

    def failure(self, err: Exception) -> RecipeError:
        path = self.cfg.path
        message = f"cannot load {path!r} on the Hugging Face hub: {type(err).__name__}: {err}"
        if not Path(path).exists():
            message += f" (not a local path either, relative to {os.getcwd()})"
        key = "data.name" if "config name" in str(err).lower() else "data.path"
        return RecipeError(key, message)
