"""Randomness as a pure function of the recipe's seed and where training stands.

The augmentation of sample i in epoch e draws from RNGs seeded with (seed, e, i), whichever worker, number of
workers or processes loads it and wherever the run was resumed; batch-level randomness (mixing) draws from
(seed, step). The main process's own RNGs (dropout, drop-path) are never touched by data loading, and
Accelerate saves and restores them with every checkpoint.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from trainer.data.bad_samples import BadSamples

_MASK64 = (1 << 64) - 1
SAMPLE_STREAM = 1
STEP_STREAM = 2


def mix_seed(*values: int) -> int:
    """A 64-bit seed from integers (splitmix64 over each in turn): nearby inputs give unrelated seeds."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & _MASK64
        state ^= state >> 29
    return state


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample `index`'s augmentation in `epoch`."""
    return mix_seed(SAMPLE_STREAM, seed, epoch, index)


def step_seed(seed: int, step: int) -> int:
    """The seed of batch-level randomness (Mixup/CutMix) in optimizer step `step`."""
    return mix_seed(STEP_STREAM, seed, step)


def seed_rngs(value: int) -> None:
    """Seed Python's, numpy's and torch's CPU RNGs (what timm's transforms and Mixup draw from).

    `torch.default_generator.manual_seed` rather than `torch.manual_seed`: the CPU generator alone, 100x
    cheaper, and no CUDA RNG is touched.
    """
    random.seed(value)
    np.random.seed(value & 0xFFFFFFFF)
    torch.default_generator.manual_seed(value)


@contextmanager
def preserved_rngs() -> Iterator[None]:
    """Run the block and put Python's, numpy's and torch's CPU RNG states back as they were."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class ExampleTransform(Protocol):
    """Transforms example `j` of a batch of dataset columns (transforms.ImageClassificationTransform)."""

    def example(self, batch: dict[str, list[Any]], j: int) -> dict[str, Any]: ...


class SeededTransform(Dataset):
    """`dataset[i]` through a transform, one sample at a time, each under RNGs seeded from
    (seed, epoch, i); `seed=None` applies the transform unseeded (a deterministic eval pipeline).

    The epoch lives in shared memory, so `set_epoch` in the main process reaches persistent workers (they
    receive an epoch's indices only after it is set). In the main process (num_workers = 0) the RNG states
    are put back after each batch, so loading data never changes the model's dropout stream.
    """

    def __init__(
        self, dataset: Any, transform: ExampleTransform, seed: int | None, bad: BadSamples | None = None
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.bad = bad
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        size = len(self.dataset)  # an index past the end is another copy of a sample (repeated augmentation)
        rows = [int(i) % size for i in indices]
        batch = self.bad.fetch(self.dataset, rows) if self.bad is not None else self.dataset[rows]
        if self.seed is None:
            return [self.transform.example(batch, j) for j in range(len(indices))]
        epoch = int(self._epoch)
        examples = []
        with preserved_rngs() if get_worker_info() is None else nullcontext():
            for j, index in enumerate(indices):
                seed_rngs(sample_seed(self.seed, epoch, int(index)))
                examples.append(self.transform.example(batch, j))
        return examples
