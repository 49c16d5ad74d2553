"""`data.streaming`: the train split read as a stream of parquet or WebDataset shards, each process its share.

The shards are a `datasets` IterableDataset with one data source per shard file (`indexed_stream`, over a
sharded `Split` of trainer.data.sources.shards), split
across the processes with `datasets.distributed.split_dataset_by_node` (whole shards per process when their
number divides by the number of processes, else every process reads all and keeps every N-th example), and
across each process's data workers by `datasets` (by shards). Nothing is copied into the datasets cache.

What stays as with map-style data:
- Each row has a global index (its running number through the split's shards in sorted name order), and its
  augmentation draws from RNGs seeded with (seed, epoch, index) (`SeededTransform`): the same augmentation
  as the same row read map-style, whichever process or worker reads it.
- The order is a function of (seed, epoch) (and the number of processes and data workers): the shard order
  and a buffer shuffle seeded from the recipe's seed, shifted by `set_epoch`.
- An unreadable image is replaced by the next readable row, read from its shard (`BadSamples`).
- Exact resume: the loop restores (epoch, batches done) and skips the epoch's first batches with
  `accelerator.skip_first_batches`, which reads and drops them: the same batches as the interrupted run.

What differs: an epoch has the same number of batches on every process (DDP would hang otherwise), computed
from the shards' row counts without communication (`epoch_plan`): every data worker reads at most as many
batches as the smallest share any worker of any process can get in any epoch. With shards of equal size
(scripts/prepare_data.py writes them) and a number of shards that divides by processes x workers, every row
is read exactly once per epoch; otherwise the rows past that count in the larger shares are left out of the
epoch (a warning says how many). Every batch is full (`drop_last`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from trainer.data.bad_samples import BadSamples
from trainer.data.schema import DataCfg
from trainer.data.seeding import SeededTransform, mix_seed
from trainer.data.sources import Split
from trainer.data.sources.shards import INDEX, Shards, iter_rows
from trainer.errors import RecipeError

SHARD_STREAM = 5
"""mix_seed stream of the shard order and shuffle buffer (seeding: 1 samples, 2 steps; 3 mixing; 4 RA)."""
DEFAULT_SHUFFLE_BUFFER = 1000
WARN_UNREAD_FRACTION = 0.01
"""Warn when an epoch leaves out more than this fraction of the rows (uneven shards across processes)."""


@dataclass(frozen=True)
class EpochPlan:
    """How many batches each data worker of each process yields per epoch (the same on every process)."""

    batches_per_worker: tuple[int, ...]
    """Batches of data worker w (w = 0 in the main process without workers)."""
    batch_size: int
    num_processes: int
    rows: int
    """Rows in all shards."""

    @property
    def batches(self) -> int:
        """Batches per process per epoch: the loader's length."""
        return sum(self.batches_per_worker)

    @property
    def rows_read(self) -> int:
        """Rows the processes read together per epoch."""
        return self.batches * self.batch_size * self.num_processes


def epoch_plan(rows: tuple[int, ...], *, batch_size: int, num_processes: int, num_workers: int) -> EpochPlan:
    """Batches per data worker from the shard row counts alone (no communication, no reading).

    As `datasets` assigns shards: with n shards and P processes, when P divides n each process reads n/P
    whole shards (which ones changes with the epoch's shard order), else each reads all n and keeps every
    P-th example; a process's (or, reading all, every process's) shards go to its W workers round-robin, so
    worker w reads c_w of them. Worker w can count on the rows of the c_w smallest shards (divided by P when
    every process reads all), whatever the epoch; it yields that many full batches, and no more.
    """
    n = len(rows)
    workers = max(1, num_workers)
    every_process_reads_all = n % num_processes != 0
    own = n if every_process_reads_all else n // num_processes
    smallest = sorted(rows)
    plan = []
    for worker in range(workers):
        shards = len(range(worker, own, workers))
        least = sum(smallest[:shards])
        if every_process_reads_all:
            least //= num_processes
        plan.append(least // batch_size)
    return EpochPlan(tuple(plan), batch_size, num_processes, sum(rows))


def streamed_epoch_plan(train: Split, cfg: DataCfg, num_workers: int, num_processes: int) -> EpochPlan:
    """The epoch plan of the sharded train split on this many processes and data workers; RecipeError when a
    worker's share holds no full batch, a warning when an epoch leaves out more than a few rows."""
    plan = epoch_plan(
        train.shards.rows, batch_size=cfg.batch_size, num_processes=num_processes, num_workers=num_workers
    )
    _check_plan(plan, train.shards, num_workers)
    return plan


def streamed_train_set(
    train: Split,
    cfg: DataCfg,
    transform: Any,
    plan: EpochPlan,
    *,
    seed: int,
    bad: BadSamples,
    num_replicas: int = 1,
    rank: int = 0,
) -> StreamedTrainSet:
    """This process's (`rank` of `num_replicas`) share of the sharded train split, shuffled as a function of
    (seed, epoch) and augmented per row as map-style data is."""
    stream = shuffled(indexed_stream(train, cfg), seed, cfg.shuffle_buffer or DEFAULT_SHUFFLE_BUFFER)
    if num_replicas > 1:
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(stream, rank=rank, world_size=num_replicas)
    return StreamedTrainSet(stream, train.rows, transform, seed=seed, bad=bad, plan=plan)


def indexed_stream(train: Split, cfg: DataCfg) -> Any:
    """The split as a `datasets` stream of examples with their global index in INDEX, images undecoded
    ({bytes, path}): one data source per shard (what datasets shuffles and splits across processes and
    workers), each read in file order, its rows numbered from the shard's first global index.

    `IterableDataset.from_generator` over the shard list rather than `load_dataset(..., streaming=True)`:
    datasets' examples do not say which shard and row they come from, and numbering each shard's stream
    separately (`shard(...).map(..., with_indices=True)`, concatenated) costs time quadratic in the number
    of shards at start-up (5 s for 1024 shards). The rows are read as datasets' parquet and WebDataset
    builders read them (same columns, same sample grouping and decoding of .tar members).
    """
    import datasets

    shards, features = train.shards, train.features
    columns = (cfg.image_column, cfg.label_column)
    indexed = datasets.Features(
        {
            cfg.image_column: datasets.Image(decode=False),
            cfg.label_column: features[cfg.label_column],
            INDEX: datasets.Value("int64"),
        }
    )
    return datasets.IterableDataset.from_generator(
        _indexed_rows,
        features=indexed,
        gen_kwargs={
            "files": list(shards.files),
            "offsets": list(shards.offsets),
            "fmt": shards.fmt,
            "columns": columns,
        },
    )


def _indexed_rows(files: list[str], offsets: list[int], fmt: str, columns: tuple[str, ...]) -> Iterator[dict]:
    for file, offset in zip(files, offsets, strict=True):
        for row, example in enumerate(iter_rows(file, fmt, columns), start=offset):
            example[INDEX] = row
            yield example


def shuffled(stream: Any, seed: int, buffer_size: int) -> Any:
    """`stream` in an order that is a function of (seed, epoch): the shards in a shuffled order, one after
    another, through a shuffle buffer of `buffer_size` examples (`set_epoch` shifts both seeds).

    One shard at a time (`max_buffer_input_shards=1` where datasets has it): datasets' interleaving of
    several shards reads them in threads and, for parquet, sleeps 5 s whenever an iteration ends (an Arrow
    work-around), i.e. at every epoch's end in every worker. prepare_data.py's shards are shuffled samples
    already, so one shard at a time loses nothing there.
    """
    import inspect

    one_at_a_time = {}
    if "max_buffer_input_shards" in inspect.signature(stream.shuffle).parameters:
        one_at_a_time["max_buffer_input_shards"] = 1
    return stream.shuffle(seed=mix_seed(SHARD_STREAM, seed) >> 1, buffer_size=buffer_size, **one_at_a_time)


class StreamedTrainSet(SeededTransform, IterableDataset):
    """This process's share of the train shards, augmented as `SeededTransform` does for row i of epoch e.

    Each data worker reads its own shards (datasets splits them) and yields its plan's number of full
    batches' worth of samples, a batch's rows at a time through `SeededTransform.__getitems__` with their
    global indices; the DataLoader takes batches from the workers in turn, so the order is fixed.
    """

    def __init__(
        self,
        stream: Any,
        rows: Any,
        transform: Any,
        *,
        seed: int,
        bad: BadSamples,
        plan: EpochPlan,
    ) -> None:
        super().__init__(rows, transform, seed=seed, bad=bad)
        self.stream = stream
        self.plan = plan

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.stream.set_epoch(epoch)  # datasets keeps the epoch in shared memory too (persistent workers)

    def __len__(self) -> int:
        return self.plan.batches * self.plan.batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        quota = self.plan.batches_per_worker[worker] * self.plan.batch_size
        if quota == 0:
            return
        size, read = self.plan.batch_size, 0
        examples = iter(islice(iter(self.stream), quota))
        while chunk := list(islice(examples, size)):
            read += len(chunk)
            self.dataset.hold(chunk)
            try:
                yield from self.__getitems__([int(example[INDEX]) for example in chunk])
            finally:
                self.dataset.release()
        if read < quota:  # datasets assigned shards otherwise than epoch_plan assumes: stop, never hang
            raise RuntimeError(
                f"data error: data worker {worker} read {read} streamed rows, its epoch needs {quota};"
                f" the shard split differs from trainer.data.streaming.epoch_plan's (datasets version?)"
            )


def is_streamed(loader: DataLoader) -> bool:
    """Whether `loader` reads StreamedTrainSet (this process's share already: prepare without resharding)."""
    return isinstance(loader.dataset, StreamedTrainSet)


def prepare_streamed(loader: DataLoader, accelerator: Any) -> DataLoader:
    """Accelerate's DataLoaderShard for this process alone: batches moved to the device, no resharding and no
    dispatching from the main process (Accelerate's default for iterable datasets), no RNG syncing."""
    from accelerate.data_loader import prepare_data_loader

    return prepare_data_loader(
        loader,
        accelerator.device,
        num_processes=1,
        process_index=0,
        put_on_device=True,
        dispatch_batches=False,
        non_blocking=accelerator.non_blocking,
    )


def _check_plan(plan: EpochPlan, shards: Shards, num_workers: int) -> None:
    workers = max(1, num_workers)
    setup = (
        f"{len(shards.files)} shard(s) of {min(shards.rows)}-{max(shards.rows)} rows,"
        f" {plan.num_processes} process(es) x {workers} data worker(s)"
    )
    if plan.batches == 0:
        raise RecipeError(
            "data.batch_size",
            f"{plan.batch_size} is more than a data worker's share of the streamed train split ({setup}):"
            " an epoch has no batch; lower it, use fewer data workers, or write more or larger shards",
        )
    left_out = plan.rows - plan.rows_read
    if left_out > WARN_UNREAD_FRACTION * plan.rows and int(os.environ.get("RANK", "0")) == 0:
        print(
            f"data warning: data.streaming: each epoch reads {plan.rows_read} of the {plan.rows} train rows"
            f" ({setup}; every process and worker must read as many full batches): write shards of equal"
            " size whose number divides by processes x workers (scripts/prepare_data.py --num-shards)",
            file=sys.stderr,
            flush=True,
        )
