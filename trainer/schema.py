"""The recipe schema: one class per TOML table, each key typed, bounded and documented.

The docstring under each field is the reference documentation of that key (README's recipe reference is
generated from it). Tables marked "open" pass their extra keys on (to timm, to the optimizer class, ...);
those keys are checked later against the callee's signature.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NO_EVAL = "none"
"""The `data.eval_split` value that disables evaluation (compared case-insensitively)."""


class Section(BaseModel):
    """A recipe table: unknown keys are errors, types are strict (a string is never a number), numbers are
    finite (nan or inf would train silently wrong)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, use_attribute_docstrings=True)


class OpenSection(Section):
    """A recipe table whose extra keys are passed through to a callee and checked against its signature."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, use_attribute_docstrings=True)


class ModelCfg(OpenSection):
    """`[model]` (open): `timm.create_model(name, **every other key)`."""

    name: str
    """timm model name, e.g. "vit_small_patch16_224" (any name in `timm.list_models()`, with a pretrained
    tag such as "resnet50.a1_in1k"), or a timm model folder: "hf-hub:user/repo" or "local-dir:runs/x" (a run
    directory is one)."""
    pretrained: bool | None = None
    """Start from timm's pretrained weights for `name` (`create_model(name, pretrained=True)`: from the
    Hugging Face cache, or downloaded); default: true for "hf-hub:" and "local-dir:" names, else false."""
    weights: str | None = None
    """Optional local `.safetensors` file of initial weights, loaded by timm as pretrained weights
    (`pretrained_cfg_overlay=dict(file=...)`). As with `pretrained`: another num_classes gets a new head,
    another in_chans an adapted first conv, another img_size a resampled position embedding; anything else
    that does not fit is an error naming the keys."""
    channels_last: bool = False
    """Use channels-last memory format (faster convolutions on GPUs)."""
    compile: bool = False
    """Wrap the model in `torch.compile`."""
    num_classes: int | None = Field(None, ge=1)
    """Classifier outputs (timm's argument; default: the model's, 1000 for ImageNet models)."""
    in_chans: int | None = Field(None, ge=1)
    """Input image channels (timm's argument; default 3)."""
    drop_rate: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout before the classifier (timm's argument)."""
    drop_path_rate: float | None = Field(None, ge=0.0, lt=1.0)
    """Stochastic depth rate (timm's argument, where the model has one)."""

    @model_validator(mode="after")
    def _safetensors(self) -> ModelCfg:
        if self.weights is not None and not self.weights.endswith(".safetensors"):
            raise ValueError(f"weights: expected a local .safetensors file, got {self.weights!r}")
        if self.weights is not None and self.pretrained:
            raise ValueError(
                "weights: replaces the pretrained weights; set model.weights or model.pretrained"
            )
        return self


class DataCfg(Section):
    """`[data]`: a Hugging Face `datasets` dataset and its image pipeline."""

    path: str = Field(min_length=1)
    """Hub name, a directory written by `save_to_disk`, an image folder, or parquet file(s) / a glob; with
    `streaming`, a directory, file or glob of parquet or WebDataset (.tar) shards."""
    format: Literal["auto", "hub", "disk", "imagefolder", "parquet", "annotations", "webdataset"] = "auto"
    """How to read `path`; "auto" detects it ("webdataset": .tar shards, read with `streaming`)."""
    streaming: bool = False
    """Read the train split as a stream of shards (parquet or WebDataset on a local or shared filesystem,
    e.g. written by scripts/prepare_data.py), each process its share (`split_dataset_by_node`); nothing is
    copied into the datasets cache. The eval split is read as usual."""
    shuffle_buffer: int | None = Field(None, ge=1)
    """With streaming: examples in the shuffle buffer of each data worker (default 1000); the shard order
    is shuffled too, both as a function of (seed, epoch)."""
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
    """Drop the last incomplete train batch (timm's default: every micro-batch has batch_size samples)."""
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
                "repeated_augmentation: its sampler indexes a map-style dataset; not with data.streaming"
            )
        if not self.drop_last:
            raise ValueError(
                "drop_last: data.streaming reads full batches only (every process the same number)"
            )
        return self


class TrainCfg(Section):
    """`[train]`: length, accumulation, precision and the loss."""

    epochs: int | None = Field(None, ge=1)
    """Train for this many epochs (set this or max_steps)."""
    max_steps: int | None = Field(None, ge=1)
    """Train for this many optimizer steps (set this or epochs)."""
    accumulate: int = Field(1, ge=1)
    """Micro-batches per optimizer step (MMEngine's accumulative_counts)."""
    precision: Literal["no", "fp16", "bf16"] = "no"
    """Autocast precision (MMEngine's AmpOptimWrapper); fp16 uses dynamic loss scaling."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """Label smoothing (MMPretrain's LabelSmoothLoss); with [mixup] it is folded into the mixed targets."""
    loss: Literal["cross_entropy", "bce"] = "cross_entropy"
    """"cross_entropy" (soft-target cross-entropy under [mixup]) or "bce": timm's BinaryCrossEntropy
    (MMPretrain's CrossEntropyLoss with use_sigmoid; timm's `--bce-loss`)."""
    bce_target_thresh: float | None = Field(None, gt=0.0, lt=1.0)
    """With loss "bce": soft targets above this become 1, the rest 0 (timm's `--bce-target-thresh`)."""
    bce_sum: bool = False
    """With loss "bce": sum the loss over classes instead of averaging (timm's `--bce-sum`)."""
    bce_pos_weight: float | None = Field(None, gt=0.0)
    """With loss "bce": weight of positive targets (timm's `--bce-pos-weight`)."""
    log_every: int = Field(10, ge=1)
    """Write a metrics line every this many steps."""
    log_with: list[Literal["tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml"]] = []
    """Accelerate trackers to log to, e.g. ["tensorboard"]."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A non-finite loss or gradient norm: "stop" (save nothing new, exit 1 naming the step) or "skip" the
    update (costs one host sync per step)."""
    signal_check_every: int = Field(10, ge=1)
    """With several processes, agree on a received SIGTERM/SIGUSR1 every this many steps (one tiny
    all-reduce); a single process reacts at the next step."""

    @model_validator(mode="after")
    def _bce_options(self) -> TrainCfg:
        if self.loss != "bce":
            for name in ("bce_target_thresh", "bce_pos_weight"):
                if getattr(self, name) is not None:
                    raise ValueError(f'{name}: only used with loss = "bce" (loss is {self.loss!r})')
            if self.bce_sum:
                raise ValueError(f'bce_sum: only used with loss = "bce" (loss is {self.loss!r})')
        return self

    @model_validator(mode="after")
    def _one_length(self) -> TrainCfg:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("length: set train.epochs or train.max_steps")
        if self.epochs is not None and self.max_steps is not None:
            raise ValueError("length: set train.epochs or train.max_steps, not both")
        return self


class EvalCfg(Section):
    """`[eval]`: how often to evaluate (loss, top-1, top-5)."""

    interval: int | None = Field(None, ge=1)
    """Evaluate every this many epochs (epoch-based training; default 1) or steps (max_steps training;
    default 1000); always after the last step."""
    enabled: bool = True
    """Set false to skip evaluation."""


class CheckpointCfg(Section):
    """`[checkpoint]`: MMEngine's CheckpointHook options."""

    interval: int | None = Field(None, ge=1)
    """Save every this many epochs (epoch-based training; default 1) or steps (max_steps training;
    default 1000); always after the last step."""
    max_keep: int = Field(3, ge=-1)
    """Keep the newest this many checkpoints; -1 keeps all (MMEngine's max_keep_ckpts)."""
    on_error: Literal["stop", "continue"] = "stop"
    """A checkpoint that cannot be written (full disk, no permission): "stop" training, or "continue"
    without it; either way the previous checkpoint stays usable."""

    @model_validator(mode="after")
    def _keep_something(self) -> CheckpointCfg:
        if self.max_keep == 0:
            raise ValueError("max_keep: must be -1 (keep all) or >= 1, got 0")
        return self


class ConstructorCfg(OpenSection):
    """`[optimizer.constructor]` (open): which optimizer constructor builds the param groups."""

    type: str = "Default"
    """"Default" (MMEngine's DefaultOptimWrapperConstructor), "LayerDecay", or a registered one."""


class OptimizerCfg(OpenSection):
    """`[optimizer]` (open): `type` is the class; every other key goes to its constructor."""

    type: str
    """Optimizer class: any torch.optim or timm.optim class name, a registered one, or "pkg.mod:Class"."""
    constructor: ConstructorCfg | None = None
    """Optional `[optimizer.constructor]` table."""


class RuleCfg(Section):
    """One `[paramwise.rules]` entry: multipliers for the parameters whose names match the glob."""

    lr_mult: float | None = Field(None, ge=0.0)
    """Learning-rate multiplier."""
    decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier."""
    freeze: bool = False
    """Set requires_grad = False on the matched parameters."""


class ParamwiseCfg(Section):
    """`[paramwise]`: MMEngine's paramwise_cfg, same names and meaning."""

    bias_lr_mult: float | None = Field(None, ge=0.0)
    """LR multiplier of biases (not of norm layers or DCN offsets)."""
    bias_decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier of biases (not of norm layers or DCN offsets)."""
    norm_decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier of norm-layer weights and biases."""
    flat_decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier of other 1-D parameters."""
    dwconv_decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier of depth-wise convolutions."""
    dcn_offset_lr_mult: float | None = Field(None, ge=0.0)
    """LR multiplier of deformable-convolution offsets."""
    bypass_duplicate: bool | None = None
    """Skip parameters shared between modules instead of failing."""
    rules: dict[str, RuleCfg] = {}
    """MMEngine's custom_keys with fnmatch globs on parameter names: `"head.*" = { lr_mult = 10.0 }`."""


class ClipGradCfg(Section):
    """`[clip_grad]`: MMEngine's clip_grad; by norm (max_norm, norm_type) or type = "value".

    inf is allowed here (max_norm = inf logs the gradient norm without clipping); nan fails the bounds.
    """

    model_config = ConfigDict(allow_inf_nan=True)

    type: Literal["norm", "value"] = "norm"
    """Clip the total norm ("norm") or each element ("value")."""
    max_norm: float | None = Field(None, gt=0.0)
    """Largest allowed total gradient norm (type "norm")."""
    norm_type: float | Literal["inf"] = 2.0
    """The p of the p-norm, > 0, or "inf"."""
    clip_value: float | None = Field(None, gt=0.0)
    """Largest allowed absolute gradient value (type "value")."""

    @model_validator(mode="after")
    def _complete(self) -> ClipGradCfg:
        if self.type == "norm":
            if self.max_norm is None:
                raise ValueError('max_norm: required when clipping by norm (or set type = "value")')
            if self.clip_value is not None:
                raise ValueError('clip_value: only used with type = "value"')
            if self.norm_type != "inf" and not self.norm_type > 0:
                raise ValueError(f'norm_type: must be > 0 or "inf", got {self.norm_type}')
        else:
            if self.clip_value is None:
                raise ValueError('clip_value: required with type = "value"')
            if self.max_norm is not None:
                raise ValueError("max_norm: only used when clipping by norm")
        return self


class ScheduleEntry(OpenSection):
    """One `[[schedule]]` entry (open): an MMEngine param_scheduler, `type` plus its arguments."""

    type: str
    """Scheduler type, e.g. "LinearLR", "CosineAnnealingLR", "MultiStepLR", "LinearMomentum"."""


class MixupCfg(Section):
    """`[mixup]`: Mixup/CutMix batch mixing (timm's Mixup), drawn from (seed, step); eval is never mixed.

    MMPretrain's `train_cfg.augments = [Mixup(alpha=a), CutMix(alpha=b)]` is `mixup_alpha = a,
    cutmix_alpha = b` (one of the two per batch, half the time each).
    """

    enabled: bool = True
    """Set false to turn off a base recipe's mixing."""
    mixup_alpha: float = Field(0.0, ge=0.0)
    """Mixup's Beta(alpha, alpha); 0 is off (timm's `--mixup`, MMPretrain's Mixup(alpha))."""
    cutmix_alpha: float = Field(0.0, ge=0.0)
    """CutMix's Beta(alpha, alpha); 0 is off (timm's `--cutmix`, MMPretrain's CutMix(alpha))."""
    cutmix_minmax: list[float] | None = None
    """CutMix box size as [min, max] fractions of the image, instead of alpha (timm's `--cutmix-minmax`)."""
    prob: float = Field(1.0, ge=0.0, le=1.0)
    """Probability that a batch is mixed at all (timm's `--mixup-prob`)."""
    switch_prob: float = Field(0.5, ge=0.0, le=1.0)
    """With both on: probability of CutMix instead of Mixup (timm's `--mixup-switch-prob`)."""
    mode: Literal["batch", "pair", "elem"] = "batch"
    """One lambda per batch, per pair of samples, or per sample (timm's `--mixup-mode`)."""
    correct_lam: bool = True
    """Correct lambda to the CutMix box's real area after clipping to the image (timm's and MMPretrain's)."""

    @model_validator(mode="after")
    def _something_to_mix(self) -> MixupCfg:
        if self.cutmix_minmax is not None:
            lo_hi = self.cutmix_minmax
            if len(lo_hi) != 2 or not 0.0 < lo_hi[0] < lo_hi[1] <= 1.0:
                raise ValueError(f"cutmix_minmax: must be [min, max] with 0 < min < max <= 1, got {lo_hi}")
        elif self.enabled and self.mixup_alpha == 0.0 and self.cutmix_alpha == 0.0:
            raise ValueError("mixup_alpha: set mixup_alpha or cutmix_alpha > 0 (or enabled = false)")
        return self


class EmaCfg(Section):
    """`[ema]`: a moving average of the weights (timm's ModelEmaV3), evaluated and saved beside the model.

    Updated once per optimizer step; MMEngine's EMAHook names (`momentum`, `interval`, `begin`) or timm's
    (`decay`, `warmup`).
    """

    enabled: bool = True
    """Set false to turn off a base recipe's EMA."""
    decay: float | None = Field(None, gt=0.0, lt=1.0)
    """ema = decay * ema + (1 - decay) * weights (timm's `--model-ema-decay`); or set momentum."""
    momentum: float | None = Field(None, gt=0.0, lt=1.0)
    """MMEngine's momentum = 1 - decay (EMAHook(momentum=...), e.g. 1e-4 for ConvNeXt); or set decay."""
    interval: int = Field(1, ge=1)
    """Update every this many optimizer steps (MMEngine's interval)."""
    begin: int = Field(0, ge=0)
    """Copy the weights, rather than average them, until this epoch (epoch-based training) or step
    (max_steps training): MMEngine's begin_epoch / begin_iter."""
    warmup: bool = False
    """timm's EMA warmup: decay = min(decay, 1 - (1 + n / warmup_gamma) ** -warmup_power) at update n."""
    warmup_gamma: float = Field(1.0, gt=0.0)
    """timm's warmup_gamma."""
    warmup_power: float = Field(2 / 3, gt=0.0)
    """timm's warmup_power."""
    update_buffers: bool | None = None
    """Average buffers (BatchNorm statistics) too, or copy them from the model; default: copy when
    `momentum` is set (MMEngine's default), average when `decay` is (timm's)."""

    @model_validator(mode="after")
    def _one_rate(self) -> EmaCfg:
        if self.decay is None and self.momentum is None:
            raise ValueError("decay: set decay (timm) or momentum (MMEngine, = 1 - decay)")
        if self.decay is not None and self.momentum is not None:
            raise ValueError("momentum: set decay (timm) or momentum (MMEngine, = 1 - decay), not both")
        return self


class RecipeCfg(Section):
    """The whole recipe."""

    imports: list[str] = []
    """Modules imported before anything is built (they register custom optimizers, constructors...)."""
    seed: int = Field(0, ge=0, lt=2**32)
    """Random seed for weights, data order and augmentation (0 <= seed < 2**32, numpy's range)."""
    output_dir: str | None = None
    """Run directory; default: runs/<recipe file stem>."""
    model: ModelCfg
    data: DataCfg
    train: TrainCfg
    optimizer: OptimizerCfg
    paramwise: ParamwiseCfg = ParamwiseCfg()
    clip_grad: ClipGradCfg | None = None
    schedule: list[ScheduleEntry] = []
    eval: EvalCfg = EvalCfg()
    checkpoint: CheckpointCfg = CheckpointCfg()
    mixup: MixupCfg | None = None
    ema: EmaCfg | None = None

    @model_validator(mode="after")
    def _even_batches_to_mix(self) -> RecipeCfg:
        if self.mixup is not None and self.mixup.enabled and self.data.batch_size % 2:
            raise ValueError(
                f"data.batch_size: must be even with [mixup] (it mixes pairs), got {self.data.batch_size}"
            )
        return self

    @model_validator(mode="after")
    def _soft_targets_for_threshold(self) -> RecipeCfg:
        mixing = self.mixup is not None and self.mixup.enabled
        if self.train.bce_target_thresh is not None and not mixing and self.train.label_smoothing == 0.0:
            raise ValueError(
                "train.bce_target_thresh: needs soft targets ([mixup] or train.label_smoothing > 0);"
                " hard 0/1 targets have nothing to threshold"
            )
        return self
