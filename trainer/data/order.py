"""An epoch's global order, the same on any number of processes.

Every sample appears once per epoch (with DeiT's repeated augmentation, each selected one `repeats` times),
in an order that is a function of (seed, epoch) alone, cut into global batches of G = batch_size x processes x
accumulate samples: global batch t is the same G samples however many processes, data workers and
accumulation steps make it up. Each process takes element j of a global batch when j % processes is its rank
(so the copies of a repeated sample go to different processes, as timm's RepeatAugSampler sends them), in
micro-batches of batch_size. A run stopped on N processes and resumed on M with the same G continues at the
same global batch, each sample once per epoch, each with its (seed, epoch, index) augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from trainer.data.seeding import mix_seed

ORDER_STREAM = 6
"""mix_seed stream of the epoch order (seeding's streams: 1 samples, 2 steps, 3 mixing, 5 shards)."""
SELECTED_ROUND = 256
"""timm's RepeatAugSampler keeps floor(samples / 256) * 256 of the repeated order per epoch."""


def epoch_order(size: int, seed: int, epoch: int, repeats: int = 1) -> np.ndarray:
    """The dataset indices of epoch `epoch` in order. With `repeats` > 1 (DeiT's repeated augmentation, as
    timm's RepeatAugSampler), each sample `repeats` times in a row, copy k of sample i as index
    i + k * size (its own augmentation), cut to floor(size / 256) * 256 per epoch."""
    order = np.random.default_rng(mix_seed(ORDER_STREAM, seed, epoch)).permutation(size)
    if repeats == 1:
        return order
    copies = np.repeat(order, repeats) + np.tile(np.arange(repeats), size) * size
    kept = size // SELECTED_ROUND * SELECTED_ROUND or size
    return copies[:kept]


class GlobalBatchSampler(Sampler[list[int]]):
    """The micro-batches of process `rank` of `num_processes` in each epoch's global order: global batch t,
    then t + 1, each as `accumulate` micro-batches of `batch_size`. With `drop_last` (the default) an epoch is
    its whole global batches; without, the rest is one more, shorter step, shared as evenly as can be.

    `set_epoch` picks the epoch; `start_at(n)` makes the next epoch's iteration start after its first n
    micro-batches (a resumed epoch: nothing before them is loaded)."""

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        batch_size: int,
        num_processes: int = 1,
        rank: int = 0,
        accumulate: int = 1,
        repeats: int = 1,
        drop_last: bool = True,
    ) -> None:
        self.size, self.seed, self.repeats, self.drop_last = size, seed, repeats, drop_last
        self.batch_size, self.num_processes, self.rank = batch_size, num_processes, rank
        self.accumulate = accumulate
        self.global_batch = batch_size * num_processes * accumulate
        self.epoch, self._start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def start_at(self, micro_batches_done: int) -> None:
        self._start = micro_batches_done

    @property
    def samples_per_epoch(self) -> int:
        if self.repeats == 1:
            return self.size
        return self.size // SELECTED_ROUND * SELECTED_ROUND or self.size

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
        order = epoch_order(self.size, self.seed, self.epoch, self.repeats)
        full = len(order) // self.global_batch
        p, size, step = self.rank, self.batch_size, self.num_processes
        for index in range(start, full * self.accumulate):
            t, k = divmod(index, self.accumulate)
            first = t * self.global_batch + k * size * step + p
            yield order[first : first + size * step : step].tolist()
        last = self._last_window()
        if last and start <= full * self.accumulate:
            share = order[full * self.global_batch :][p::step]
            if len(share) < last:  # fewer samples than micro-batches here: never an empty micro-batch
                share = np.concatenate([share, order[: last - len(share)]])
            for k, part in enumerate(np.array_split(share, last)):
                if full * self.accumulate + k >= start:
                    yield part.tolist()
