"""Build what a recipe trains: the Accelerator, model, data, optimizer and schedule, in that order.

`build_run` is the training loop's set-up (and the benchmark's); `build_static` builds the same model,
optimizer and schedule on the "meta" device, reading no data, for the dry run and the inspect and plot tools.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import DistributedType, ProjectConfiguration
from timm.data import Mixup
from torch.utils.data import DataLoader

from trainer.data import build_dataloaders, global_sampler
from trainer.errors import RecipeError
from trainer.model import build_model
from trainer.optim import build_optimizer
from trainer.recipe.load import Recipe
from trainer.run.ema import ModelEma
from trainer.run.loss import Loss, build_loss, build_mixup
from trainer.schedule import Schedule, build_schedule
from trainer.schedule.units import TrainingLength


def make_accelerator(recipe: Recipe, precision: str) -> Accelerator:
    """Accelerator for this recipe; on a host without CUDA it is forced onto the CPU so that several
    launched processes form one gloo process group instead of training independently."""
    train = recipe.cfg["train"]
    return Accelerator(
        gradient_accumulation_steps=train["accumulate"],
        mixed_precision=precision,
        cpu=not torch.cuda.is_available(),
        # trackers start once the run folder is known (trainer.run.tracking.start_trackers)
        project_config=ProjectConfiguration(project_dir=recipe.cfg["output_dir"]),
        # data order is a function of (seed, epoch) alone: exact resume, same order on every launch
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=recipe.cfg["seed"]),
        step_scheduler_with_optimizer=False,
    )


@dataclass
class Run:
    """Everything the loop trains with, prepared by Accelerate."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_dl: DataLoader
    eval_dl: DataLoader | None
    schedule: Schedule
    length: TrainingLength
    recipe_hparams: list[dict[str, Any]]
    """The param groups' hyper-parameters as the recipe sets them (they win over a checkpoint's)."""
    criterion: Loss
    mixup: Mixup | None
    ema: ModelEma | None


def build_run(
    recipe: Recipe,
    accelerator: Accelerator,
    dataloaders: tuple[DataLoader, DataLoader | None] | None = None,
) -> Run:
    """Model, data, optimizer, `accelerator.prepare`, length and schedule; fails on bad data before anything
    is written. `dataloaders` replaces the recipe's data (the benchmark feeds synthetic batches)."""
    cfg = recipe.cfg
    model = build_model(cfg["model"])
    mixup = build_mixup(cfg, getattr(model, "num_classes", 0), cfg["train"]["label_smoothing"])
    if cfg.get("ema", {}).get("enabled") and accelerator.distributed_type == DistributedType.FSDP:
        raise RecipeError("ema", "is not supported under FSDP (it would average sharded weights); use DDP")
    if dataloaders is None:
        with accelerator.main_process_first():  # rank 0 fills the datasets cache, the others read it
            dataloaders = build_dataloaders(
                cfg["data"],
                model,
                seed=cfg["seed"],
                num_replicas=accelerator.num_processes,
                rank=accelerator.process_index,
                accumulate=cfg["train"]["accumulate"],
            )
    train_dl, eval_dl = dataloaders
    optimizer = build_optimizer(model, cfg["optimizer"], cfg["paramwise"])
    if cfg["model"].get("compile"):
        model = torch.compile(model)
    if global_sampler(train_dl) is not None:  # this process's share of the global order: no resharding
        model, optimizer = accelerator.prepare(model, optimizer)
        train_dl = prepare_data_loader(
            train_dl,
            accelerator.device,
            num_processes=1,
            process_index=0,
            put_on_device=True,
            non_blocking=accelerator.non_blocking,
        )
    else:  # batches made elsewhere (the benchmark's synthetic data): Accelerate shards them
        model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    if eval_dl is not None:
        eval_dl = accelerator.prepare(eval_dl)
    length = TrainingLength.of(len(train_dl), cfg["train"])
    if length.accumulate > length.batches_per_epoch and accelerator.is_main_process:
        print(
            f"train warning: train.accumulate = {length.accumulate} is more than the"
            f" {length.batches_per_epoch} micro-batches of an epoch: every epoch is one optimizer step of"
            f" {length.batches_per_epoch}, and schedules counted in steps advance once per epoch",
            file=sys.stderr,
            flush=True,
        )
    ema = None
    if cfg.get("ema", {}).get("enabled"):
        begin = cfg["ema"]["begin"] * (length.steps_per_epoch if length.by_epoch else 1)
        ema = ModelEma(accelerator.unwrap_model(model), cfg["ema"], begin_step=begin)  # DDP, compile
    schedule = build_schedule(
        cfg["schedule"],
        param_groups=optimizer.param_groups,
        steps_per_epoch=length.steps_per_epoch,
        train_cfg=cfg["train"],
    )
    hparams = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    criterion = build_loss(cfg["train"], mixing=mixup is not None)
    return Run(model, optimizer, train_dl, eval_dl, schedule, length, hparams, criterion, mixup, ema)


@dataclass
class StaticBuild:
    """A recipe's model (on "meta": no memory, no weights), optimizer and schedule, built without data."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule


def build_static(cfg: dict[str, Any], steps_per_epoch: int | None = None) -> StaticBuild:
    """Model on the meta device, optimizer and schedule at `steps_per_epoch`. Used by the dry run,
    inspect_recipe.py and plot_schedule.py; where the data is unknown (None), at the fewest steps per epoch
    that fit every step-counted window of the schedule: every entry is checked, and the run checks again
    at the real number."""
    if steps_per_epoch is None:
        steps_per_epoch = _fewest_steps_per_epoch(cfg)
    model = build_model(cfg["model"], device="meta")
    optimizer = build_optimizer(model, cfg["optimizer"], cfg.get("paramwise"))
    schedule = build_schedule(
        cfg["schedule"],
        param_groups=optimizer.param_groups,
        steps_per_epoch=steps_per_epoch,
        train_cfg=cfg["train"],
    )
    return StaticBuild(model, optimizer, schedule)


def _fewest_steps_per_epoch(cfg: dict[str, Any]) -> int:
    """1, or more where an epoch-based run has step-counted schedule entries (begin, end, milestones) that
    need more steps than epochs to fit."""
    epochs = cfg["train"].get("epochs")
    last = 0.0
    for entry in cfg["schedule"] if epochs else ():
        if entry.get("by_epoch", True):
            continue
        numbers = [entry.get("begin"), entry.get("end"), *(entry.get("milestones") or [])]
        offset = entry.get("begin") or 0
        for value in numbers:
            if isinstance(value, int | float) and not isinstance(value, bool):
                last = max(last, value + (offset if value in (entry.get("milestones") or []) else 0))
    return max(1, -(-int(last + 1) // epochs)) if epochs else 1
