"""`[data]`: where the images come from and how they are loaded (the table's keys, typed and documented)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from trainer.sections import Section

NO_EVAL = "none"
"""The `data.eval_split` value that disables evaluation (compared case-insensitively)."""


class DataCfg(Section):
    """`[data]`: a Hugging Face `datasets` dataset and its image pipeline."""

    path: str = Field(min_length=1)
    """Hub name, a directory written by `save_to_disk`, an image folder, or parquet file(s) / a glob; with
    `streaming`, a directory, file or glob of parquet or WebDataset (.tar) shards."""
    format: Literal["auto", "hub", "disk", "imagefolder", "parquet", "annotations", "webdataset"] = "auto"
    """How to read `path`; "auto" detects it ("webdataset": .tar shards, read with `streaming`)."""
    streaming: bool = False
    """Read the train split from shards (parquet or WebDataset on a local or shared filesystem, e.g. written
    by scripts/prepare_data.py) a block at a time, each process its share of every global batch; nothing is
    copied into the datasets cache. The eval split is read as usual."""
    shuffle_buffer: int | None = Field(None, ge=1)
    """With streaming: rows shuffled together. An epoch visits the shards in a random order, each shard's
    blocks of rows (default: parquet row groups, 1000 samples of a .tar; else this many rows) in a random
    order, and each block's rows in a random order, all as a function of (seed, epoch)."""
    name: str | None = Field(None, min_length=1)
    """Hub configuration name, where the dataset has several."""
    image_column: str = Field("image", min_length=1)
    """Column holding the images."""
    label_column: str = Field("label", min_length=1)
    """Column holding integer class labels."""
    train_split: str = Field("train", min_length=1)
    """Split to train on."""
    eval_split: str = Field("validation", min_length=1)
    """Split to evaluate on; "none" disables evaluation."""
    eval_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    """Hold out this fraction of the train split for evaluation when `eval_split` does not exist."""
    image_size: int | None = Field(None, ge=1)
    """Input resolution; default: the model's pretrained configuration."""
    eval_image_size: int | None = Field(None, ge=1)
    """Evaluation resolution, where it differs from training's (timm's test-time size, MMPretrain's
    EfficientNetCenterCrop size, e.g. EfficientNetV2's 224 after training at 192); default: image_size."""
    batch_size: int = Field(ge=1)
    """Batch size per process (the effective batch is batch_size × accumulate × processes)."""
    eval_batch_size: int | None = Field(None, ge=1)
    """Evaluation batch size per process; default: batch_size."""
    num_workers: int | None = Field(None, ge=0)
    """DataLoader worker processes; default: min(4, CPU cores per process - 1)."""
    pin_memory: bool | None = None
    """Pin host memory for faster copies to the GPU; default: true on CUDA."""
    persistent_workers: bool | None = None
    """Keep workers alive between epochs; default: true when num_workers > 0."""
    prefetch_factor: int | None = Field(None, ge=1)
    """Batches prefetched per worker."""
    drop_last: bool = True
    """Drop the rest of an epoch that fills no whole global batch (batch_size x processes x accumulate), so
    every step has as many samples (timm drops its last incomplete batch); false: the rest is one more,
    shorter step."""
    augment: dict[str, Any] = {}
    """Keyword arguments for timm's `create_transform` in the train pipeline (auto_augment, re_prob, ...)."""
    ann_file: str | None = Field(None, min_length=1)
    """MMPretrain's annotation file of the train split (`relative/path label` per line, e.g. ImageNet's
    meta/train.txt), relative to `path`, which is then MMPretrain's data_root."""
    data_prefix: str = ""
    """With ann_file: the folder of the train images, relative to `path` (MMPretrain's data_prefix)."""
    eval_ann_file: str | None = Field(None, min_length=1)
    """With ann_file: the annotation file of the eval split (e.g. meta/val.txt), relative to `path`."""
    eval_data_prefix: str = ""
    """With eval_ann_file: the folder of the eval images, relative to `path`."""
    on_bad_sample: Literal["skip", "stop"] = "skip"
    """An unreadable image: "skip" loads another in its place (the same on resume and any number of
    workers), warns once, and counts it (`bad_samples` in metrics.jsonl); "stop" checkpoints the last
    completed step and exits 2 naming the file."""
    repeated_augmentation: int = Field(1, ge=1)
    """DeiT's repeated augmentation (timm's RepeatAugSampler, `--aug-repeats`): each selected sample appears
    this many times per epoch across the processes, each copy augmented differently; 1 is off."""

    @model_validator(mode="after")
    def _consistent(self) -> DataCfg:
        if self.ann_file is None:
            for name in ("eval_ann_file", "data_prefix", "eval_data_prefix"):
                if getattr(self, name):
                    raise ValueError(f"{name}: only used with data.ann_file (MMPretrain's annotation layout)")
        elif self.format not in ("auto", "annotations"):
            raise ValueError(
                f"ann_file: is MMPretrain's annotation layout; format {self.format!r} reads none"
            )
        if self.name is not None and self.format not in ("auto", "hub"):
            raise ValueError(f"name: is a hub config name; format {self.format!r} has no configs")
        if self.eval_fraction is not None and self.eval_split.lower() == NO_EVAL:
            raise ValueError(f"eval_fraction: is set but data.eval_split = {NO_EVAL!r} disables evaluation")
        if self.num_workers == 0 and self.persistent_workers:
            raise ValueError("persistent_workers: needs data.num_workers >= 1 (there are no workers to keep)")
        if self.num_workers == 0 and self.prefetch_factor is not None:
            raise ValueError("prefetch_factor: needs data.num_workers >= 1 (only workers prefetch)")
        return self

    @model_validator(mode="after")
    def _streaming(self) -> DataCfg:
        if not self.streaming:
            if self.format == "webdataset":
                raise ValueError("format: WebDataset shards are read as a stream; set data.streaming = true")
            if self.shuffle_buffer is not None:
                raise ValueError("shuffle_buffer: only used with data.streaming = true")
            return self
        if self.format not in ("auto", "parquet", "webdataset"):
            raise ValueError(
                f"streaming: reads parquet or WebDataset shards, not format {self.format!r}"
                " (scripts/prepare_data.py writes parquet shards from an image folder or annotation file)"
            )
        if self.ann_file is not None:
            raise ValueError(
                "ann_file: is read map-style; scripts/prepare_data.py --ann-file converts it to parquet"
                " shards for data.streaming"
            )
        if self.name is not None:
            raise ValueError("name: is a hub config name; data.streaming reads local or shared shards")
        if self.eval_fraction is not None:
            raise ValueError(
                "eval_fraction: cannot hold out part of a streamed train split; write an eval split"
                " (scripts/prepare_data.py --split) or set data.eval_split = 'none'"
            )
        if self.repeated_augmentation > 1:
            raise ValueError(
                "repeated_augmentation: repeats samples of a map-style dataset; not with data.streaming"
            )
        return self
