"""DeiT's repeated augmentation: timm's RepeatAugSampler, ordered by (seed, epoch), each copy told apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from timm.data.distributed_sampler import RepeatAugSampler

from trainer.data.seeding import mix_seed

ORDER_STREAM = 4


class RepeatedAugmentation(RepeatAugSampler):
    """timm's sampler for one process of `num_replicas`: each selected sample appears `num_repeats` times per
    epoch across the processes.

    Two pieces of glue: timm seeds its shuffle with the epoch alone, so `set_epoch` hands it a number mixed
    from (seed, epoch); and copy k of sample i is yielded as index `i + k * len(dataset)`, so that
    `SeededTransform` draws a different augmentation for each copy (it loads sample `index % len(dataset)`).
    """

    def __init__(self, dataset: Any, *, num_replicas: int, rank: int, num_repeats: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, num_repeats=num_repeats)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(mix_seed(ORDER_STREAM, self.seed, epoch) >> 1)  # < 2**63: a Generator seed

    def __iter__(self) -> Iterator[int]:
        size = len(self.dataset)
        repeated = size * self.num_repeats  # timm's list of indices, each repeated num_repeats times in a row
        for j, index in enumerate(super().__iter__()):
            position = (self.rank + j * self.num_replicas) % repeated  # where timm took it from that list
            yield index + (position % self.num_repeats) * size
