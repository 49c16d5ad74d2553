"""The DataLoaders the loop trains and evaluates on, built once for every source: the checked splits
(trainer.data.splits), timm's pipelines probed on the first image, each sample augmented from
(seed, epoch, index), unreadable images as `data.on_bad_sample` says, and the train order the global order of
trainer.data.order (a permutation per epoch, or a streamed epoch's blocks of shards), this process's share.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader

from trainer.data.bad_samples import MAX_IN_A_ROW, BadSamples, describe
from trainer.data.options import data_config, loader_options
from trainer.data.order import GlobalBatchSampler, even_blocks, map_style_sampler, streamed_sampler
from trainer.data.schema import DataCfg
from trainer.data.seeding import SeededTransform
from trainer.data.sources import Split
from trainer.data.splits import open_splits
from trainer.data.transforms import (
    ImageClassificationTransform,
    build_transforms,
    collate_image_batch,
    probe_pipelines,
    validate_augment,
)
from trainer.errors import RecipeError
from trainer.model import model_in_chans


def build_dataloaders(
    data_cfg: Mapping[str, Any],
    model: torch.nn.Module,
    *,
    seed: int,
    num_replicas: int = 1,
    rank: int = 0,
    accumulate: int = 1,
) -> tuple[DataLoader, DataLoader | None]:
    """Unprepared train and eval DataLoaders yielding (pixels, labels).

    The train loader's batches are this process's (`rank` of `num_replicas`) micro-batches of each epoch's
    global order (`GlobalBatchSampler`: global batches of batch_size x num_replicas x `accumulate` rows,
    the same on any number of processes): prepare it without Accelerate's sharding. Each sample's
    augmentation is a function of (seed, epoch, index) (`SeededTransform`): call `set_position(loader, epoch,
    micro_batches_done)` at the start of every epoch.
    """
    cfg = data_config(data_cfg)
    validate_augment(cfg.augment)
    options = loader_options(cfg)
    train, evaluation = open_splits(cfg, seed=seed, num_classes=getattr(model, "num_classes", None))
    layout = {"num_replicas": num_replicas, "rank": rank, "accumulate": accumulate}
    sampler = train_sampler(train, cfg, seed=seed, **layout)
    train_tf, eval_tf = build_transforms(
        model,
        image_column=cfg.image_column,
        label_column=cfg.label_column,
        image_size=cfg.image_size,
        augment=cfg.augment,
        eval_image_size=cfg.eval_image_size,
    )
    in_chans = model_in_chans(model)
    if cfg.image_size is not None:
        warn_if_below_stride(model, cfg.image_size, "data.image_size")
    skip = cfg.on_bad_sample == "skip"
    probe_pipelines(train.rows, cfg.train_split, {"eval": eval_tf, "train": train_tf}, in_chans, skip)
    bad = BadSamples(cfg.image_column, cfg.on_bad_sample)
    train_loader = DataLoader(
        SeededTransform(train.rows, train_tf, seed=seed, bad=bad),
        batch_sampler=sampler,
        collate_fn=collate_image_batch,
        worker_init_fn=ignore_stop_signals,
        generator=own_generator(seed),
        **options,
    )
    if evaluation is None:
        return train_loader, None
    probe_pipelines(evaluation.rows, cfg.eval_split, {"eval": eval_tf}, in_chans, skip)
    return train_loader, eval_loader(evaluation.rows, eval_tf, cfg, options)


def train_sampler(
    train: Split, cfg: DataCfg, *, seed: int, num_replicas: int, rank: int, accumulate: int
) -> GlobalBatchSampler:
    """This process's share of the train split's global order: a permutation per epoch (repeated with
    `data.repeated_augmentation`), or a sharded split's blocks; a RecipeError when an epoch holds no step."""
    layout = {"batch_size": cfg.batch_size, "num_processes": num_replicas, "rank": rank}
    layout.update(accumulate=accumulate, drop_last=cfg.drop_last)
    if train.shards is not None:
        shards = train.shards
        blocks = even_blocks(shards.rows, cfg.shuffle_buffer) if cfg.shuffle_buffer else shards.blocks
        sampler = streamed_sampler(blocks, seed=seed, **layout)
    else:
        sampler = map_style_sampler(len(train), seed=seed, repeats=cfg.repeated_augmentation, **layout)
    if len(sampler) == 0:
        one = sampler.global_batch == cfg.batch_size
        size = f"{cfg.batch_size} x {num_replicas} processes x {accumulate} accumulate"
        size = f"{size} = {sampler.global_batch}"
        rows = sampler.samples_per_epoch
        raise RecipeError(
            "data.batch_size",
            f"{cfg.batch_size if one else size} is more than the {rows} training samples: with drop_last an"
            f" epoch has no {'batch' if one else 'step'}; lower it, or set data.drop_last = false",
        )
    return sampler


def set_position(loader: DataLoader, epoch: int, micro_batches_done: int = 0) -> None:
    """Start `epoch` of a train loader after its first `micro_batches_done` micro-batches (a resumed epoch):
    its order, and the augmentation of its samples (their epoch in shared memory, for persistent workers)."""
    if hasattr(loader, "set_epoch"):  # Accelerate's loader: it sets its sampler's epoch at each iteration
        loader.set_epoch(epoch)
    sampler = global_sampler(loader)
    sampler.set_epoch(epoch)
    sampler.start_at(micro_batches_done)
    if isinstance(loader.dataset, SeededTransform):
        loader.dataset.set_epoch(epoch)


def global_sampler(loader: DataLoader) -> GlobalBatchSampler | None:
    """The GlobalBatchSampler behind a (prepared) train loader, or None (synthetic data)."""
    sampler = getattr(loader, "batch_sampler", None)
    while sampler is not None and not isinstance(sampler, GlobalBatchSampler):
        sampler = getattr(sampler, "batch_sampler", None)  # Accelerate's wrapper around it
    return sampler


def eval_loader(
    eval_ds: Any, eval_tf: ImageClassificationTransform, cfg: Any, options: dict[str, Any]
) -> DataLoader:
    """The eval DataLoader: in order, every sample once, unseeded (nothing random), unreadable images as
    `data.on_bad_sample` says; the same for map-style and streamed training data."""
    return DataLoader(
        SeededTransform(eval_ds, eval_tf, seed=None, bad=BadSamples(cfg.image_column, cfg.on_bad_sample)),
        batch_size=cfg.eval_batch_size or cfg.batch_size,
        shuffle=False,
        drop_last=False,
        collate_fn=collate_image_batch,
        worker_init_fn=ignore_stop_signals,
        generator=own_generator(0),
        **options,
    )


def own_generator(seed: int) -> torch.Generator:
    """A loader's own generator: PyTorch draws each new iterator's worker seed from it (a loader without one
    draws from the global RNG, which the model's randomness uses: 0 workers and persistent ones would
    differ)."""
    return torch.Generator().manual_seed(seed)


def warn_if_below_stride(model: torch.nn.Module, size: int, key: str) -> None:
    """One warning line when images of `size` are far below what the model can look at: less than a ViT's
    patch, or less than half a network's total stride (its last feature map would be under half a position).
    Legal, and tiny tests do it on purpose; an image size of 1 is almost surely a slip."""
    info = getattr(model, "feature_info", None)
    stride = 0
    if isinstance(info, list) and info and isinstance(info[-1], dict):
        stride = int(info[-1].get("reduction", 0)) // 2
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if patch:
        stride = max(stride, int(max(patch) if isinstance(patch, tuple | list) else patch))
    if size < stride and int(os.environ.get("RANK", "0")) == 0:
        name = getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
        print(
            f"data warning: {key} = {size} is below what {name} can look at ({stride} pixels: a patch, or"
            " half its total stride); set a larger size, or mean it",
            file=sys.stderr,
            flush=True,
        )


def ignore_stop_signals(worker_id: int) -> None:
    """In each data worker: SIGTERM, SIGUSR1 and SIGINT are the trainer's to act on (it stops after the step,
    with a checkpoint). SLURM, `kill -- -PGID` and a terminal signal every process, and a worker that died of
    one (PyTorch's workers do by default) would end the run before the checkpoint. The trainer ends its
    workers itself (`close_workers`), and kills any left at exit (they no longer die of multiprocessing's
    SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def close_workers(*loaders: DataLoader | None) -> None:
    """End the (persistent) data workers of each loader now, as its iterator's clean-up does, instead of at
    interpreter exit."""
    for loader in loaders:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
            loader._iterator = None


@atexit.register  # registered after multiprocessing's own exit handler, so it runs before it
def _kill_leftover_workers() -> None:
    """Data workers still alive at exit ignore multiprocessing's SIGTERM: end them before it waits on them."""
    import multiprocessing

    if multiprocessing.active_children():  # PyTorch's SIGCHLD handler would call a killed worker an error
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


class DataWatch:
    """What the loop needs to know of unreadable samples, read from the loaders' shared memory (no sync)."""

    def __init__(self, *loaders: DataLoader | None) -> None:
        self.watched = [
            (loader.dataset.bad, loader.dataset.dataset)
            for loader in loaders
            if loader is not None and getattr(loader.dataset, "bad", None) is not None
        ]

    def total(self) -> int:
        """Samples replaced so far (this process)."""
        return sum(bad.total() for bad, _ in self.watched)

    def fatal(self) -> str | None:
        """One line naming the file that ends the run ("stop", or too many unreadable in a row), else None."""
        for bad, dataset in self.watched:
            row = bad.fatal()
            if row is not None:
                what = (
                    f"{MAX_IN_A_ROW} unreadable images in a row from" if bad.too_many.any() else "unreadable"
                )
                file = describe(dataset, row, bad.image_column)
                return f"data error: data.on_bad_sample: {what} image {file}"
        return None
