"""`[data]` as the loaders use it: every default filled in by its schema, the checks that read no files,
and the DataLoader worker options for this machine."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from trainer.data.schema import DataCfg
from trainer.data.transforms import validate_augment
from trainer.errors import RecipeError
from trainer.sections import validate_section

DATA_KEYS = frozenset(DataCfg.model_fields)
"""Every key `[data]` accepts."""


def data_config(data_cfg: Mapping[str, Any] | DataCfg) -> DataCfg:
    """`[data]` with every default filled in, checked by its schema (RecipeError on a problem)."""
    if isinstance(data_cfg, DataCfg):
        return data_cfg
    return validate_section(DataCfg, data_cfg, ("data",))


def validate_data_cfg(data_cfg: Mapping[str, Any] | DataCfg) -> None:
    """Checks of `[data]` that read no files: the schema, augment names against timm's create_transform, and
    the worker options on this machine."""
    cfg = data_config(data_cfg)
    validate_augment(cfg.augment)
    loader_options(cfg)


def loader_options(data_cfg: Mapping[str, Any] | DataCfg) -> dict[str, Any]:
    """DataLoader worker options with defaults filled in.

    Defaults: `num_workers` = min(4, CPUs per local process - 1) (see default_num_workers);
    `pin_memory` when CUDA is present (HF Trainer's default; without CUDA pinning only warns);
    `persistent_workers` whenever there are workers (timm's default: workers are not re-forked every epoch);
    `prefetch_factor` torch's default (2).
    """
    cfg = data_config(data_cfg)
    num_workers = default_num_workers() if cfg.num_workers is None else cfg.num_workers
    options: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available() if cfg.pin_memory is None else cfg.pin_memory,
        "persistent_workers": num_workers > 0 if cfg.persistent_workers is None else cfg.persistent_workers,
    }
    # The schema rejects these with num_workers = 0; here the default on this machine may be 0 workers.
    if options["persistent_workers"] and num_workers == 0:
        raise RecipeError(
            "data.persistent_workers", "needs data.num_workers >= 1 (there are no workers to keep)"
        )
    if cfg.prefetch_factor is not None:
        if num_workers == 0:
            raise RecipeError("data.prefetch_factor", "needs data.num_workers >= 1 (only workers prefetch)")
        options["prefetch_factor"] = cfg.prefetch_factor
    return options


def default_num_workers() -> int:
    """min(4, CPUs per local process - 1): one core per process stays with the training step.

    Decoding and augmenting in a worker overlaps the step; timm's train.py uses 4 workers. A 2-core machine
    gets 1 worker with one process and none with two (torchrun/accelerate set LOCAL_WORLD_SIZE).
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(4, cpus // max(1, local_processes) - 1))


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide `datasets`' progress bars unless stderr is a terminal: in a log file they are noise, and a bad
    data configuration must end in exactly one line on stderr."""
    from datasets.utils import logging as datasets_logging

    if sys.stderr.isatty() or not datasets_logging.is_progress_bar_enabled():
        yield
        return
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        datasets_logging.enable_progress_bar()
