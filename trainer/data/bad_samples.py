"""Unreadable images: load another sample in its place, the same on every worker count and after a resume,
and tell the loop (through shared memory, no per-step sync) so it can count them or stop cleanly."""

from __future__ import annotations

import sys
from typing import Any

import torch
from PIL import Image
from torch.utils.data import get_worker_info

MAX_IN_A_ROW = 50
"""Unreadable samples in a row (timm's dataset gives up after as many) that end the run."""
_SLOTS = 65
"""One counter per data worker (up to 64) and one for the main process: no two writers share a slot."""


class BadSamples:
    """Decode failures of one split. `fetch` loads a batch of dataset rows; a row that cannot be decoded is
    replaced by the next readable one (index + 1, + 2, ...), warned about once per file and process, and
    counted. In "stop" mode (or after MAX_IN_A_ROW in a row) the first such index is kept for the loop,
    which checkpoints and exits naming the file."""

    def __init__(self, image_column: str, policy: str) -> None:
        self.policy = policy
        self.image_column = image_column
        self.counts = torch.zeros(_SLOTS, dtype=torch.int64).share_memory_()
        self.first_fatal = torch.full((_SLOTS,), -1, dtype=torch.int64).share_memory_()
        self.too_many = torch.zeros(_SLOTS, dtype=torch.bool).share_memory_()
        self._warned: set[int] = set()

    def fetch(self, dataset: Any, rows: list[int]) -> dict[str, list[Any]]:
        """`dataset[rows]`, with every undecodable row replaced."""
        try:
            return dataset[rows]
        except Exception:  # noqa: BLE001 - any decode failure: find the row(s) one by one
            pass
        batch: dict[str, list[Any]] = {}
        for row in rows:
            example = self._readable(dataset, row)
            for column, value in example.items():
                batch.setdefault(column, []).append(value)
        return batch

    def _readable(self, dataset: Any, row: int) -> dict[str, Any]:
        slot = _slot()
        for step in range(MAX_IN_A_ROW + 1):
            candidate = (row + step) % len(dataset)
            try:
                return dataset[candidate]
            except Exception as err:  # noqa: BLE001 - the file is unreadable, whatever PIL or datasets says
                self.counts[slot] += 1
                if self.policy == "stop" and self.first_fatal[slot] < 0:
                    self.first_fatal[slot] = candidate
                if self.policy == "skip" and candidate not in self._warned:  # "stop" says it once, at the end
                    self._warned.add(candidate)
                    detail = " ".join(str(err).split())[:200]
                    print(
                        f"data warning: unreadable image {describe(dataset, candidate, self.image_column)}"
                        f" ({type(err).__name__}: {detail}); loading the next sample in its place",
                        file=sys.stderr,
                        flush=True,
                    )
        self.too_many[slot] = True
        if self.first_fatal[slot] < 0:
            self.first_fatal[slot] = row
        others = [c for c in dataset.column_names if c != self.image_column]
        example = dataset.select_columns(others)[row] if others else {}
        return {**example, self.image_column: Image.new("RGB", (8, 8))}  # the loop stops at its next check

    def total(self) -> int:
        """Replacements so far, by every worker of this split (a read of shared memory)."""
        return int(self.counts.sum())

    def fatal(self) -> int | None:
        """The dataset row that ends the run ("stop" mode, or too many in a row), else None."""
        found = self.first_fatal[self.first_fatal >= 0]
        return int(found.min()) if len(found) else None


def describe(dataset: Any, row: int, image_column: str) -> str:
    """The file of row `row` (its path where the dataset keeps one), else "row N"."""
    try:
        raw = dataset.select_columns([image_column]).cast_column(image_column, _undecoded())[row]
        path = raw[image_column].get("path") if isinstance(raw[image_column], dict) else None
    except Exception:  # noqa: BLE001 - naming the file must never fail the naming
        path = None
    return repr(path) if path else f"row {row}"


def _undecoded() -> Any:
    import datasets

    return datasets.Image(decode=False)


def _slot() -> int:
    info = get_worker_info()
    return 0 if info is None else 1 + info.id % (_SLOTS - 1)
