"""What every data source gives the rest of the data path: its splits, each a `Split` of rows with an image
and an integer label, their number, their label names and, for shards, the plan a stream reads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from trainer.data.schema import DataCfg
from trainer.errors import RecipeError


@dataclass
class Split:
    """One split of a source. `rows` gives random access by row number (`rows[i]`, `rows[[i, j]]`,
    `select_columns`, `cast_column`): a `datasets.Dataset`, or a sharded split's `ShardRows`, which reads a
    row from its shard. `shards` is a sharded split's files and row counts (what `data.streaming` reads as a
    stream); None for a map-style split."""

    name: str
    rows: Any
    features: Any
    """The `datasets.Features` of the split's columns."""
    shards: Any = None

    def __len__(self) -> int:
        return len(self.rows)

    def label_names(self, column: str) -> list[str] | None:
        """The class names of `column` where it is a `datasets.ClassLabel`, else None."""
        import datasets

        feature = self.features.get(column)
        return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None

    def label_range(self, column: str) -> tuple[int, int, int] | None:
        """(min, max, missing) of an integer label column: read from the Arrow data, or from a sharded
        split's metadata (None where it holds no statistics: the rows are then not read to find out)."""
        if self.shards is not None:
            return self.shards.column_range(column)
        import pyarrow.compute as pc

        labels = self.rows.with_format("arrow")[column]
        low, high = (v.as_py() for v in pc.min_max(labels).values())
        return (low if low is not None else 0, high if high is not None else 0, labels.null_count)

    def materialized(self, columns: list[str]) -> Split:
        """This split as map-style rows of `columns` (a sharded split is read into the datasets cache
        once)."""
        if self.shards is None:
            return self
        return self.shards.load(self.name, columns)


class Source(Protocol):
    """Where a recipe's images come from: `data.path` read in one format."""

    def split_names(self) -> list[str]:
        """The splits the source holds, in its order."""
        ...

    def split(self, name: str) -> Split:
        """Split `name` (one of `split_names()`)."""
        ...


class DatasetDictSource:
    """A source whose splits are read at once as a `datasets.DatasetDict` (`load`; a single Dataset is the
    "train" split); a failure to read is one RecipeError on `data.path`."""

    format: ClassVar[str]
    uses_cache: ClassVar[bool] = True
    """Whether reading it writes to the datasets cache (an index, Arrow files)."""

    def __init__(self, cfg: DataCfg) -> None:
        self.cfg = cfg
        self._splits: Any = None

    def load(self) -> Any:
        """Every split, as `datasets` reads them."""
        raise NotImplementedError

    def failure(self, err: Exception) -> RecipeError:
        """The one line for a failed `load`."""
        return RecipeError(
            "data.path", f"cannot load {self.cfg.path!r} as {self.format}: {type(err).__name__}: {err}"
        )

    def splits(self) -> Any:
        if self._splits is None:
            import datasets

            if self.uses_cache:
                check_cache_writable()
            try:
                loaded = self.load()
            except RecipeError:
                raise
            except Exception as err:  # datasets raises many types for a bad path; all are data.path's
                raise self.failure(err) from None
            if isinstance(loaded, datasets.Dataset):
                loaded = datasets.DatasetDict({"train": loaded})
            self._splits = loaded
        return self._splits

    def split_names(self) -> list[str]:
        return list(self.splits())

    def split(self, name: str) -> Split:
        rows = self.splits()[name]
        return Split(name, rows, rows.features)


def local_path(cfg: DataCfg) -> str:
    """`data.path` on this machine (`~` expanded); a RecipeError when nothing is there."""
    path = Path(cfg.path).expanduser()
    if not path_exists(cfg.path):
        raise RecipeError("data.path", f"no such file or directory: {cfg.path!r} (relative to {os.getcwd()})")
    return str(path)


def path_exists(path: str) -> bool:
    """Whether `path` exists; a RecipeError on `data.path` for a path the file system refuses to look up
    (too long, a file in the middle), naming it shortened."""
    try:
        return Path(path).expanduser().exists()
    except OSError as err:
        raise RecipeError("data.path", f"cannot look up {shorten(path)}: {err.strerror or err}") from None


def shorten(path: str, keep: int = 60) -> str:
    """`path` quoted, its middle cut out when it is long."""
    if len(path) <= 2 * keep:
        return repr(path)
    return repr(f"{path[:keep]}...{path[-keep:]}") + f" ({len(path)} characters)"


def check_cache_writable() -> None:
    """A RecipeError naming HF_HOME when the datasets cache cannot be written (a container user without a
    home, a read-only mount), instead of the loader's error blaming `data.path`."""
    import datasets

    cache = Path(datasets.config.HF_DATASETS_CACHE)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        writable = os.access(cache, os.W_OK | os.X_OK)
        reason = "" if writable else "permission denied"
    except OSError as err:
        writable, reason = False, err.strerror or str(err)
    if not writable:
        raise RecipeError(
            "HF_HOME",
            f"the datasets cache {str(cache)!r} cannot be written ({reason}, uid {os.getuid()}): set HF_HOME"
            " (or HF_DATASETS_CACHE) to a folder this user can write",
            file="environment",
        )
