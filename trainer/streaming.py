"""`data.streaming`: the train split read as a stream of parquet or WebDataset shards, each process its share.

The shards are a `datasets` IterableDataset with one data source per shard file (`indexed_stream`), split
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

import copy
import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from trainer.bad_samples import BadSamples
from trainer.errors import RecipeError, did_you_mean
from trainer.schema import NO_EVAL, DataCfg
from trainer.seeding import SeededTransform, mix_seed
from trainer.shards import Shards, count_rows, find_shards, iter_rows, parquet_column_range, pick_split
from trainer.transforms import (
    build_transforms,
    collate_image_batch,
    eval_loader,
    model_in_chans,
    probe_pipelines,
)

INDEX = "__index__"
"""The column a stream's examples carry their global index in."""
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


def _open(shards: Shards, split: str) -> Any:
    """The split as `datasets.load_dataset(..., streaming=True)` reads it (every column)."""
    import datasets

    try:
        stream = datasets.load_dataset(
            shards.fmt, data_files={split: list(shards.files)}, split=split, streaming=True
        )
    except Exception as err:  # datasets raises many types for unreadable shards; all are the data's
        raise RecipeError(
            "data.path", f"cannot stream the {split} shards: {type(err).__name__}: {err}"
        ) from None
    return stream


def _features(shards: Shards, cfg: DataCfg, split: str) -> Any:
    """The split's features (parquet: the first shard's schema; WebDataset: inferred from its first
    samples), checked: both columns there, images, integer labels."""
    import datasets

    if shards.fmt == "parquet":
        import pyarrow.parquet as pq

        features = datasets.Features.from_arrow_schema(pq.read_schema(shards.files[0]))
    else:
        try:
            features = datasets.load_dataset(
                "webdataset", data_files={split: [shards.files[0]]}, split=split, streaming=True
            ).features
        except Exception as err:  # a .tar that is no WebDataset shard
            raise RecipeError(
                "data.path", f"cannot read {shards.files[0]!r}: {type(err).__name__}: {err}"
            ) from None
    columns = list(features)
    for key, column in (("data.image_column", cfg.image_column), ("data.label_column", cfg.label_column)):
        if column not in features:
            raise RecipeError(
                key,
                f"the {split} shards have no column {column!r}{did_you_mean(column, columns)}"
                f" (columns: {', '.join(columns)})",
            )
    image = features[cfg.image_column]
    if not (
        isinstance(image, datasets.Image)
        or (isinstance(image, datasets.Value) and image.dtype in ("binary", "large_binary", "string"))
        or (isinstance(image, dict) and set(image) == {"bytes", "path"})
    ):
        raise RecipeError("data.image_column", f"column {cfg.image_column!r} holds {image}, not images")
    label = features[cfg.label_column]
    if not isinstance(label, datasets.ClassLabel) and not (
        isinstance(label, datasets.Value) and label.dtype.startswith(("int", "uint"))
    ):
        raise RecipeError(
            "data.label_column",
            f"column {cfg.label_column!r} holds {label}; labels must be integer class ids",
        )
    return features


def check_labels(low: int, high: int, nulls: int, split: str, num_classes: int | None) -> None:
    """RecipeError for labels missing, negative or past the model's classes."""
    if nulls:
        raise RecipeError("data.label_column", f"split {split!r} has {nulls} examples without a label")
    if num_classes and low < 0:
        raise RecipeError(
            "data.label_column",
            f"split {split!r} has negative labels (min {low}); labels must be 0..{num_classes - 1}",
        )
    if num_classes and high >= num_classes:
        raise RecipeError(
            "data.label_column",
            f"split {split!r} has labels up to {high}, but the model has num_classes = {num_classes}"
            f" (labels must be 0..{num_classes - 1}); set model.num_classes = {high + 1} or more",
        )


def indexed_stream(shards: Shards, cfg: DataCfg, split: str) -> Any:
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

    features = _features(shards, cfg, split)
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


class ShardRows:
    """The rows of a split by global index, as `SeededTransform` and `BadSamples` index a Dataset: the rows
    of the batch in hand (`hold`), any other read from its shard (an unreadable image's replacement, the row
    a warning names). Images are decoded on access."""

    def __init__(self, shards: Shards, image_column: str, label_column: str) -> None:
        self.shards = shards
        self.image_column = image_column
        self.column_names = [image_column, label_column]
        self._held: dict[int, dict[str, Any]] = {}

    def hold(self, examples: list[dict[str, Any]]) -> None:
        self._held = {int(example[INDEX]): example for example in examples}

    def release(self) -> None:
        self._held = {}

    def __len__(self) -> int:
        return self.shards.total

    def raw(self, row: int) -> dict[str, Any]:
        held = self._held.get(row)
        if held is not None:
            return held
        raw = self.shards.read_row(row, self.column_names)
        image = raw[self.image_column]
        if isinstance(image, bytes):  # a binary column: the Image struct the stream casts it to
            raw[self.image_column] = {"bytes": image, "path": None}
        elif isinstance(image, str):  # a column of file paths
            raw[self.image_column] = {"bytes": None, "path": image}
        return raw

    def example(self, row: int, columns: list[str], decode: bool = True) -> dict[str, Any]:
        raw = self.raw(row)
        out = {column: raw[column] for column in columns}
        if self.image_column in out:
            image = out[self.image_column]
            if decode:
                out[self.image_column] = _decode(image)
            elif isinstance(image, dict):
                shard, _ = self.shards.locate(row)
                where = os.path.basename(self.shards.files[shard])
                out[self.image_column] = {
                    **image,
                    "path": f"{image.get('path') or 'row ' + str(row)} in {where}",
                }
        return out

    def __getitem__(self, key: int | slice | list[int]) -> dict[str, Any]:
        if isinstance(key, int):
            return self.example(key, self.column_names)
        rows = range(len(self))[key] if isinstance(key, slice) else key
        examples = [self.example(int(row), self.column_names) for row in rows]
        return {column: [example[column] for example in examples] for column in self.column_names}

    def select_columns(self, columns: list[str]) -> _Columns:
        return _Columns(self, list(columns), decode=True)


class _Columns:
    """Some columns of ShardRows (what `BadSamples` and `describe` select); `cast_column(..., Image(decode=
    False))` gives the undecoded image with its path and shard."""

    def __init__(self, rows: ShardRows, columns: list[str], decode: bool) -> None:
        self.rows, self.column_names, self.decode = rows, columns, decode

    def cast_column(self, column: str, feature: Any) -> _Columns:
        return _Columns(self.rows, self.column_names, decode=getattr(feature, "decode", True))

    def __getitem__(self, row: int) -> dict[str, Any]:
        return self.rows.example(int(row), self.column_names, decode=self.decode)


def _decode(image: Any) -> Any:
    import datasets

    return datasets.Image().decode_example(image)


class StreamedTrainSet(SeededTransform, IterableDataset):
    """This process's share of the train shards, augmented as `SeededTransform` does for row i of epoch e.

    Each data worker reads its own shards (datasets splits them) and yields its plan's number of full
    batches' worth of samples, a batch's rows at a time through `SeededTransform.__getitems__` with their
    global indices; the DataLoader takes batches from the workers in turn, so the order is fixed.
    """

    def __init__(
        self,
        stream: Any,
        rows: ShardRows,
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
                f" the shard split differs from trainer.streaming.epoch_plan's (datasets version?)"
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


def build_streaming_dataloaders(
    cfg: DataCfg,
    model: torch.nn.Module,
    options: dict[str, Any],
    *,
    seed: int,
    num_replicas: int = 1,
    rank: int = 0,
) -> tuple[DataLoader, DataLoader | None]:
    """Unprepared train (this process's share of the streamed shards) and eval (map-style) DataLoaders, as
    `trainer.data.build_dataloaders` returns them; `options` are its worker options."""
    fmt, splits = find_shards(cfg.path, cfg.format)
    train_files = pick_split(splits, cfg.train_split, "data.train_split", cfg.path)
    shards = count_rows(train_files, fmt)
    num_classes = getattr(model, "num_classes", None)
    stream = indexed_stream(shards, cfg, cfg.train_split)
    if fmt == "parquet":
        labels = parquet_column_range(shards.files, cfg.label_column)
        if labels is not None:
            check_labels(*labels, cfg.train_split, num_classes)
    plan = epoch_plan(
        shards.rows, batch_size=cfg.batch_size, num_processes=num_replicas, num_workers=options["num_workers"]
    )
    _check_plan(plan, shards, options["num_workers"])
    stream = shuffled(stream, seed, cfg.shuffle_buffer or DEFAULT_SHUFFLE_BUFFER)
    if num_replicas > 1:
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(stream, rank=rank, world_size=num_replicas)
    train_tf, eval_tf = build_transforms(
        model,
        image_column=cfg.image_column,
        label_column=cfg.label_column,
        image_size=cfg.image_size,
        augment=cfg.augment,
    )
    in_chans = model_in_chans(model)
    rows = ShardRows(shards, cfg.image_column, cfg.label_column)
    probe_pipelines(rows, cfg.train_split, {"eval": eval_tf, "train": train_tf}, in_chans)
    bad = BadSamples(cfg.image_column, cfg.on_bad_sample)
    train_set = StreamedTrainSet(stream, rows, train_tf, seed=seed, bad=bad, plan=plan)
    train_loader = DataLoader(
        train_set, batch_size=cfg.batch_size, drop_last=True, collate_fn=collate_image_batch, **options
    )
    if cfg.eval_split.lower() == NO_EVAL:
        return train_loader, None
    hint = "; or set data.eval_split = 'none'"
    eval_files = pick_split(splits, cfg.eval_split, "data.eval_split", cfg.path, hint=hint)
    eval_ds = _map_style(count_rows(eval_files, fmt), cfg, cfg.eval_split, num_classes)
    probe_pipelines(eval_ds, cfg.eval_split, {"eval": eval_tf}, in_chans)
    return train_loader, eval_loader(eval_ds, eval_tf, cfg, options)


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


def _map_style(shards: Shards, cfg: DataCfg, split: str, num_classes: int | None) -> Any:
    """The eval split's shards as a map-style Dataset (read into the datasets cache once), checked."""
    import datasets
    import pyarrow.compute as pc

    _features(shards, cfg, split)
    options = {"columns": [cfg.image_column, cfg.label_column]} if shards.fmt == "parquet" else {}
    try:
        ds = datasets.load_dataset(shards.fmt, data_files={split: list(shards.files)}, split=split, **options)
    except Exception as err:  # datasets raises many types for unreadable shards; all are the data's
        raise RecipeError(
            "data.path", f"cannot load the {split} shards: {type(err).__name__}: {err}"
        ) from None
    if len(ds) == 0:
        raise RecipeError("data.eval_split", f"split {split!r} of {cfg.path!r} is empty")
    ds = ds.select_columns([cfg.image_column, cfg.label_column])
    if not (
        isinstance(ds.features[cfg.image_column], datasets.Image) and ds.features[cfg.image_column].decode
    ):
        ds = ds.cast_column(cfg.image_column, datasets.Image())
    labels = ds.with_format("arrow")[cfg.label_column]
    low, high = (v.as_py() for v in pc.min_max(labels).values())
    check_labels(low, high, labels.null_count, split, num_classes)
    return ds


def streaming_dataset_dict(cfg: DataCfg) -> Any:
    """Every split at `data.path` as a `datasets.IterableDatasetDict` of streams (nothing is copied into the
    cache), each with len() from its shards' metadata (what `load_dataset_dict`'s callers count)."""
    import datasets

    fmt, splits = find_shards(cfg.path, cfg.format)
    streams = {}
    for split, files in splits.items():
        shards = count_rows(files, fmt)
        stream = copy.copy(_open(shards, split))
        stream.__class__, stream.num_rows = _sized_stream_class(), shards.total
        streams[split] = stream
    return datasets.IterableDatasetDict(streams)


@functools.cache
def _sized_stream_class() -> type:
    import datasets

    class SizedIterableDataset(datasets.IterableDataset):
        """A stream whose len() is its row count from the shards' metadata."""

        num_rows: int

        def __len__(self) -> int:
            return self.num_rows

    return SizedIterableDataset
