"""An epoch's global order, the same on any number of processes.

Every row appears once per epoch (with DeiT's repeated augmentation, each selected one `repeats` times), in an
order that is a function of (seed, epoch) alone, cut into global batches of G = batch_size x processes x
accumulate rows: global batch t is the same G rows however many processes, data workers and accumulation
steps make it up. Each process takes its share of each global batch in micro-batches of batch_size. A run
stopped on N processes and resumed on M with the same G continues at the same global batch, each row once per
epoch, each with its (seed, epoch, index) augmentation.

Map-style data is one permutation per epoch, and a process takes the elements j of a global batch with
j % processes == its rank (the copies of a repeated sample go to different processes, as timm's
RepeatAugSampler sends them). Shards are read by blocks (parquet row groups): a streamed epoch visits the
shards in a random order, each shard's blocks in a random order and each block's rows in a random order, and
a process takes contiguous runs of a global batch, so that it reads few blocks, each once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import numpy as np
from torch.utils.data import Sampler

from trainer.data.seeding import mix_seed

ORDER_STREAM = 6
"""mix_seed stream of the epoch order (seeding's streams: 1 samples, 2 steps, 3 mixing, 5 shards)."""
SHARD_STREAM = 5
SELECTED_ROUND = 256
"""timm's RepeatAugSampler keeps floor(samples / 256) * 256 of the repeated order per epoch."""


def permutation_order(size: int, seed: int, repeats: int, epoch: int) -> np.ndarray:
    """The dataset indices of epoch `epoch`, a permutation. With `repeats` > 1 (DeiT's repeated
    augmentation, as timm's RepeatAugSampler), each sample `repeats` times in a row, copy k of sample i as
    index i + k * size (its own augmentation), cut to floor(size / 256) * 256 per epoch."""
    order = np.random.default_rng(mix_seed(ORDER_STREAM, seed, epoch)).permutation(size)
    if repeats == 1:
        return order
    copies = np.repeat(order, repeats) + np.tile(np.arange(repeats), size) * size
    return copies[: repeated_size(size)]


def repeated_size(size: int) -> int:
    """Rows of a repeated-augmentation epoch (timm's: the selected share of the repeated order)."""
    return size // SELECTED_ROUND * SELECTED_ROUND or size


def block_order(blocks: tuple[tuple[int, ...], ...], seed: int, epoch: int) -> np.ndarray:
    """The global row indices of a streamed epoch: shards (`blocks[s]` is shard s's rows per block) in a
    random order, each shard's blocks in a random order, each block's rows in a random order."""
    rng = np.random.default_rng(mix_seed(SHARD_STREAM, seed, epoch))
    shard_rows = [sum(b) for b in blocks]
    shard_starts = np.cumsum([0, *shard_rows[:-1]])
    parts = []
    for shard in rng.permutation(len(blocks)):
        starts = shard_starts[shard] + np.cumsum([0, *blocks[shard][:-1]])
        for block in rng.permutation(len(blocks[shard])):
            parts.append(starts[block] + rng.permutation(blocks[shard][block]))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def even_blocks(rows: tuple[int, ...], size: int) -> tuple[tuple[int, ...], ...]:
    """Blocks of `size` rows (the last of a shard shorter), per shard."""
    return tuple(tuple(min(size, n - s) for s in range(0, n, size)) or (0,) for n in rows)


class GlobalBatchSampler(Sampler[list[int]]):
    """The micro-batches of process `rank` of `num_processes` in each epoch's global order: global batch t,
    then t + 1, each as `accumulate` micro-batches of `batch_size`. With `drop_last` (the default) an epoch is
    its whole global batches; without, the rest is one more, shorter step, shared as evenly as can be.

    `order(epoch)` gives the epoch's rows (`samples_per_epoch` of them). A process takes the elements j of a
    global batch with j % processes == rank, or with `contiguous` the runs of batch_size rows (k *
    processes + rank) of it (k counts its micro-batches). `set_epoch` picks the epoch; `start_at(n)` makes the
    next iteration start after the epoch's first n micro-batches (a resumed epoch: none of them is loaded)."""

    def __init__(
        self,
        order: Callable[[int], np.ndarray],
        samples_per_epoch: int,
        *,
        batch_size: int,
        num_processes: int = 1,
        rank: int = 0,
        accumulate: int = 1,
        drop_last: bool = True,
        contiguous: bool = False,
    ) -> None:
        self.order, self.samples_per_epoch = order, samples_per_epoch
        self.batch_size, self.num_processes, self.rank = batch_size, num_processes, rank
        self.accumulate, self.drop_last, self.contiguous = accumulate, drop_last, contiguous
        self.global_batch = batch_size * num_processes * accumulate
        self.epoch, self._start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def start_at(self, micro_batches_done: int) -> None:
        self._start = micro_batches_done

    @property
    def steps_per_epoch(self) -> int:
        """Whole global batches per epoch (one more, shorter, without drop_last)."""
        return self.samples_per_epoch // self.global_batch + (self._last_window() > 0)

    def _last_window(self) -> int:
        """Micro-batches of the short last step without drop_last (0: none)."""
        rest = self.samples_per_epoch % self.global_batch
        if self.drop_last or rest == 0:
            return 0
        return math.ceil(rest / (self.num_processes * self.batch_size))

    def __len__(self) -> int:
        return self.samples_per_epoch // self.global_batch * self.accumulate + self._last_window()

    def __iter__(self) -> Iterator[list[int]]:
        start, self._start = self._start, 0
        order = self.order(self.epoch)
        full = len(order) // self.global_batch
        size, step, rank = self.batch_size, self.num_processes, self.rank
        for index in range(start, full * self.accumulate):
            t, k = divmod(index, self.accumulate)
            base = t * self.global_batch
            if self.contiguous:
                first = base + (k * step + rank) * size
                yield order[first : first + size].tolist()
            else:
                first = base + k * size * step + rank
                yield order[first : first + size * step : step].tolist()
        last = self._last_window()
        if last and start <= full * self.accumulate + last - 1:
            rest = order[full * self.global_batch :]
            share = np.array_split(rest, step)[rank] if self.contiguous else rest[rank::step]
            if len(share) < last:  # fewer rows than micro-batches here: never an empty micro-batch
                share = np.concatenate([share, order[: last - len(share)]])
            for k, part in enumerate(np.array_split(share, last)):
                if full * self.accumulate + k >= start:
                    yield part.tolist()


def map_style_sampler(size: int, *, seed: int, repeats: int = 1, **kwargs: object) -> GlobalBatchSampler:
    """The global order of a map-style split of `size` rows (a permutation per epoch)."""
    order = functools.partial(permutation_order, size, seed, repeats)
    samples = repeated_size(size) if repeats > 1 else size
    return GlobalBatchSampler(order, samples, **kwargs)


def streamed_sampler(
    blocks: tuple[tuple[int, ...], ...], *, seed: int, **kwargs: object
) -> GlobalBatchSampler:
    """The global order of a sharded split read by `blocks` (rows per block, per shard)."""
    order = functools.partial(block_order, blocks, seed)
    return GlobalBatchSampler(order, sum(sum(b) for b in blocks), contiguous=True, **kwargs)
