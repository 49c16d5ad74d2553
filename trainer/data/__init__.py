"""The data path: `[data]`'s schema and options, sources (hub, save_to_disk, image folder, annotation file,
parquet, shards) behind one `Split` interface, the checks, timm's pipelines with per-sample seeding,
samplers, unreadable samples, streaming, and the DataLoaders the loop trains on."""

from trainer.data.loaders import (
    DataWatch,
    build_dataloaders,
    close_workers,
    eval_loader,
    global_sampler,
    set_position,
)
from trainer.data.options import (
    DATA_KEYS,
    data_config,
    default_num_workers,
    loader_options,
    quiet_progress_bars,
    validate_data_cfg,
)
from trainer.data.sources import Split, detect_format, open_source
from trainer.data.splits import load_dataset_dict, load_splits, open_splits
from trainer.schedule.units import batches_per_epoch

__all__ = [
    "DATA_KEYS",
    "DataWatch",
    "Split",
    "batches_per_epoch",
    "build_dataloaders",
    "close_workers",
    "data_config",
    "default_num_workers",
    "detect_format",
    "eval_loader",
    "load_dataset_dict",
    "load_splits",
    "loader_options",
    "open_source",
    "open_splits",
    "quiet_progress_bars",
    "global_sampler",
    "set_position",
    "validate_data_cfg",
]
