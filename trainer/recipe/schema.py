"""The whole recipe: the run's own tables (`[train]`, `[eval]`, `[checkpoint]`, `[mixup]`, `[ema]`) and
the components' tables, each typed, bounded and documented in its own package's schema.

The docstring under each field is the reference documentation of that key (README's recipe reference is
generated from it). Tables marked "open" pass their extra keys on (to timm, to the optimizer class, ...);
those keys are checked later against the callee's signature."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trainer.data.schema import DataCfg
from trainer.model.schema import ModelCfg
from trainer.optim.schema import ClipGradCfg, OptimizerCfg, ParamwiseCfg
from trainer.schedule.schema import ScheduleEntry
from trainer.sections import Section

TrackerArgs = dict[str, Any] | None
EvalMetric = Literal[
    "auto", "eval_top1", "eval_top5", "eval_loss", "ema_eval_top1", "ema_eval_top5", "ema_eval_loss"
]
Tracker = Literal[
    "tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml", "dvclive", "swanlab", "trackio"
]


class TrackersCfg(Section):
    """`[train.trackers]`: the project and each tracker's init arguments (Accelerate's `init_kwargs`), e.g.
    `wandb = { entity = "me", tags = ["quick"] }`; a run is named by its folder unless its arguments say."""

    project: str | None = Field(None, min_length=1)
    """The trackers' project (W&B project, MLflow experiment, ...); default: the recipe's name."""
    tensorboard: TrackerArgs = None
    """Arguments of TensorBoard's SummaryWriter (flush_secs, ...); its files go in the run folder."""
    wandb: TrackerArgs = None
    """Arguments of `wandb.init` (entity, tags, notes, name, ...)."""
    mlflow: TrackerArgs = None
    """Arguments of Accelerate's MLflowTracker (run_name, tags, description, nested_run, logging_dir)."""
    aim: TrackerArgs = None
    """Arguments of `aim.Run` (repo, ...)."""
    comet_ml: TrackerArgs = None
    """Arguments of Comet's `start`."""
    clearml: TrackerArgs = None
    """Arguments of ClearML's `Task.init`."""
    dvclive: TrackerArgs = None
    """Arguments of `dvclive.Live`."""
    swanlab: TrackerArgs = None
    """Arguments of `swanlab.init`."""
    trackio: TrackerArgs = None
    """Arguments of `trackio.init`."""


class TrainCfg(Section):
    """`[train]`: length, accumulation, precision and the loss."""

    epochs: int | None = Field(None, ge=1)
    """Train for this many epochs (set this or max_steps)."""
    max_steps: int | None = Field(None, ge=1)
    """Train for this many optimizer steps (set this or epochs)."""
    schedule_past_end: Literal["error", "warn"] = "error"
    """Schedule windows and milestones past the end of training: "error" (a schedule that outlasts its run
    is likely a slip), or "warn" (MMEngine's behaviour: a window that begins there is dropped, one that ends
    there is cut, milestones there never apply; a warning line each). A `--set` of train.epochs or
    train.max_steps (a quick trial) makes it "warn" unless set."""
    accumulate: int = Field(1, ge=1)
    """Micro-batches per optimizer step (MMEngine's accumulative_counts): a step is one global batch of
    batch_size x processes x accumulate samples."""
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
    log_with: list[Tracker] = []
    """Accelerate's trackers to log every record to, e.g. ["tensorboard"] (installed with trainer; the others
    with their own package); checked before training."""
    trackers: TrackersCfg = TrackersCfg()
    """The trackers' project and init arguments."""
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
            raise ValueError("max_steps: set train.epochs or train.max_steps, not both")
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
    save_best: EvalMetric | None = None
    """Keep the weights of the best eval so far as model_best.safetensors (MMEngine's save_best, timm's
    model_best), its metadata naming the step: an eval metric of metrics.jsonl ("auto" is eval_top1;
    ema_* keeps the EMA's weights)."""
    rule: Literal["greater", "less"] | None = None
    """Whether a greater or a smaller save_best value is better; default: less for a loss, else greater."""

    @field_validator("save_best", mode="before")
    @classmethod
    def _mmengine_metric_names(cls, value: Any) -> Any:
        names = {"accuracy/top1": "eval_top1", "accuracy/top5": "eval_top5", "loss": "eval_loss"}
        if isinstance(value, str) and value in names:
            raise ValueError(f"{value!r} is MMEngine's name; here the metric is {names[value]!r}")
        return value

    @model_validator(mode="after")
    def _keep_something(self) -> CheckpointCfg:
        if self.max_keep == 0:
            raise ValueError("max_keep: must be -1 (keep all) or >= 1, got 0")
        if self.rule is not None and self.save_best is None:
            raise ValueError("rule: says which save_best value is better; set checkpoint.save_best too")
        return self


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
    on_existing_output: Literal["refuse", "increment"] = "refuse"
    """A fresh start (no --resume) into an output_dir that holds a run: "refuse" (continue it with --resume
    auto, or pick another output_dir), or "increment" to train in output_dir-1, -2, ... (timm's train.py)."""
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
    def _best_of_an_eval_that_runs(self) -> RecipeCfg:
        best = self.checkpoint.save_best
        if best is not None and not self.eval.enabled:
            raise ValueError(f"checkpoint.save_best: {best!r} needs evaluation, and eval.enabled is false")
        if best is not None and best.startswith("ema_") and (self.ema is None or not self.ema.enabled):
            raise ValueError(
                f"checkpoint.save_best: {best!r} is the EMA's metric, and the recipe has no [ema]"
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
