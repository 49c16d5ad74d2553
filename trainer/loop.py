"""The training loop: one function that shows every optimizer step in order, Accelerate's examples style."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from trainer.checkpoint import (
    TrainerState,
    load_trainer_state,
    resolve_resume,
    save_checkpoint,
)
from trainer.data import build_dataloaders
from trainer.evaluate import evaluate
from trainer.metrics import MetricsLog, format_line
from trainer.model import build_model
from trainer.optim import build_optimizer
from trainer.recipe import Recipe
from trainer.run_info import recipe_changes, write_run_info
from trainer.runtime import resolve_precision
from trainer.schedule import build_schedule


def make_accelerator(recipe: Recipe, precision: str) -> Accelerator:
    """Accelerator for this recipe; on a host without CUDA it is forced onto the CPU so that several
    launched processes form one gloo process group instead of training independently."""
    train = recipe.cfg["train"]
    return Accelerator(
        gradient_accumulation_steps=train["accumulate"],
        mixed_precision=precision,
        cpu=not torch.cuda.is_available(),
        log_with=train["log_with"] or None,
        project_config=ProjectConfiguration(project_dir=recipe.cfg["output_dir"]),
        # data order is a function of (seed, epoch) alone: exact resume, same order on every launch
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=recipe.cfg["seed"]),
        step_scheduler_with_optimizer=False,
    )


def train(
    recipe: Recipe,
    amp: bool = False,
    resume: str | None = None,
    dataloaders: tuple[DataLoader, DataLoader | None] | None = None,
) -> int:
    """Train as `recipe` says; returns the process exit code.

    `dataloaders` replaces the recipe's data (the benchmark feeds synthetic batches through the same loop).
    """
    cfg = recipe.cfg
    tcfg = cfg["train"]
    output_dir = Path(cfg["output_dir"])
    accelerator = make_accelerator(recipe, resolve_precision(tcfg, amp))
    set_seed(cfg["seed"])
    resume_from = resolve_resume(resume, output_dir)

    # Build everything (and fail on bad data) before anything is written.
    model = build_model(cfg["model"])
    if dataloaders is None:
        with accelerator.main_process_first():  # rank 0 fills the datasets cache, the others read it
            dataloaders = build_dataloaders(cfg["data"], model, seed=cfg["seed"])
    train_dl, eval_dl = dataloaders
    optimizer = build_optimizer(model, cfg["optimizer"], cfg["paramwise"])
    if cfg["model"].get("compile"):
        model = torch.compile(model)
    model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    if eval_dl is not None:
        eval_dl = accelerator.prepare(eval_dl)

    accumulate = tcfg["accumulate"]
    batches_per_epoch = len(train_dl)
    steps_per_epoch = math.ceil(batches_per_epoch / accumulate)
    total_steps = tcfg.get("max_steps") or tcfg["epochs"] * steps_per_epoch
    by_epoch = "epochs" in tcfg
    schedule = build_schedule(
        cfg["schedule"], param_groups=optimizer.param_groups, steps_per_epoch=steps_per_epoch, train_cfg=tcfg
    )
    recipe_hparams = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]

    state = TrainerState()
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = load_trainer_state(resume_from)
        # The current recipe wins over the checkpoint's hyper-parameters (the schedule re-applies below).
        for group, hparams in zip(optimizer.param_groups, recipe_hparams, strict=True):
            group.update(hparams)
        if state.schedule:
            schedule.load_state_dict(state.schedule)
    schedule.apply(optimizer, state.step)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        recipe.save(output_dir / "recipe.toml")
        write_run_info(output_dir, cfg)
    if tcfg["log_with"]:
        accelerator.init_trackers(output_dir.name, config=_flat(cfg))
    log = MetricsLog(accelerator, output_dir, use_trackers=bool(tcfg["log_with"]))
    if resume_from is not None:
        changes = recipe_changes((resume_from / "recipe.toml").read_text(), recipe.to_toml())
        accelerator.print(
            f"resumed from {resume_from} at step {state.step}"
            + (f"; recipe changed: {'; '.join(changes)}" if changes else "")
        )

    clip = cfg.get("clip_grad")
    label_smoothing = tcfg["label_smoothing"]
    default_interval = 1 if by_epoch else 1000
    ckpt_every = cfg["checkpoint"].get("interval", default_interval)
    eval_every = cfg["eval"].get("interval", default_interval)
    eval_on = eval_dl is not None and cfg["eval"]["enabled"]
    samples_per_step = cfg["data"]["batch_size"] * accumulate * accelerator.num_processes
    fp16 = accelerator.mixed_precision == "fp16"

    progress = tqdm(
        total=total_steps, initial=state.step, disable=not accelerator.is_main_process, dynamic_ncols=True
    )
    loss_sum = torch.zeros((), device=accelerator.device)
    micro_batches = 0
    grad_norm = None
    last_log_time, last_log_step = time.perf_counter(), state.step

    def save() -> None:
        state.schedule = schedule.state_dict()
        save_checkpoint(accelerator, output_dir, state, recipe.to_toml(), cfg["checkpoint"]["max_keep"])

    def run_eval() -> None:
        metrics = evaluate(model, eval_dl, accelerator)
        log.write({"step": state.step, "epoch": state.epoch, **metrics})
        if accelerator.is_main_process:
            progress.write(format_line({"step": state.step, "epoch": state.epoch, **metrics}, total_steps))
        for name, value in (("loss", metrics["eval_loss"]), *metrics.items()):
            schedule.report_metric(name, value, state.step)

    model.train()
    while state.step < total_steps:
        train_dl.set_epoch(state.epoch)
        loader = train_dl
        if state.batches_done:  # mid-epoch resume: skip what this epoch already consumed
            loader = accelerator.skip_first_batches(train_dl, state.batches_done)
        for images, labels in loader:
            # The last window of an epoch may be short: Accelerate divides every loss by `accumulate`,
            # so rescale to a mean over the window's real length.
            window_start = (state.batches_done // accumulate) * accumulate
            window = min(accumulate, batches_per_epoch - window_start)
            with accelerator.accumulate(model):
                logits = model(images)
                loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
                accelerator.backward(loss * (accumulate / window) if window != accumulate else loss)
                if accelerator.sync_gradients and clip is not None:
                    grad_norm = _clip(accelerator, model, clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            micro_batches += 1
            state.batches_done += 1
            if not accelerator.sync_gradients:
                continue
            # fp16 overflow skips the update; the schedule then stays in step with real updates
            updated = not (fp16 and accelerator.optimizer_step_was_skipped)
            if updated:
                state.step += 1
                schedule.apply(optimizer, state.step)
                progress.update(1)
            end_of_epoch = state.batches_done >= batches_per_epoch
            if updated and (state.step % tcfg["log_every"] == 0 or state.step == total_steps):
                now = time.perf_counter()
                record = {
                    "step": state.step,
                    "epoch": state.epoch + state.batches_done / batches_per_epoch,
                    "loss": accelerator.reduce(loss_sum, "mean").item() / micro_batches,
                    "lr": _base_lr(optimizer),
                    "samples_per_sec": (state.step - last_log_step)
                    * samples_per_step
                    / (now - last_log_time),
                }
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                log.write(record)
                progress.set_postfix(
                    loss=f"{record['loss']:.4f}",
                    lr=f"{record['lr']:.2e}",
                    sps=f"{record['samples_per_sec']:.0f}",
                )
                if accelerator.is_main_process:
                    progress.write(format_line(record, total_steps))
                loss_sum.zero_()
                micro_batches = 0
                last_log_time, last_log_step = time.perf_counter(), state.step
            if end_of_epoch:
                state.epoch += 1
                state.batches_done = 0
            done = state.step >= total_steps
            unit_count, unit_end = (state.epoch, end_of_epoch) if by_epoch else (state.step, updated)
            if eval_on and unit_end and (unit_count % eval_every == 0 or done):
                run_eval()
                model.train()
            if unit_end and (unit_count % ckpt_every == 0 or done):
                save()
            if done:
                break
        else:
            if state.batches_done:  # the loader ended early (uneven shards): the epoch is over
                state.epoch += 1
                state.batches_done = 0
    progress.close()

    accelerator.wait_for_everyone()
    accelerator.save_model(model, str(output_dir), safe_serialization=True)
    log.close()
    accelerator.end_training()
    return 0


def _clip(accelerator: Accelerator, model: torch.nn.Module, clip: dict[str, Any]) -> torch.Tensor | None:
    """Clip as `[clip_grad]` says; returns the total norm before clipping (a tensor: no host sync here)."""
    if clip["type"] == "value":
        accelerator.clip_grad_value_(model.parameters(), clip["clip_value"])
        return None
    norm_type = math.inf if clip["norm_type"] == "inf" else clip["norm_type"]
    return accelerator.clip_grad_norm_(model.parameters(), clip["max_norm"], norm_type=norm_type)


def _base_lr(optimizer) -> float:
    """The lr of the first group without an lr multiplier (the recipe's lr under the schedule)."""
    for group in optimizer.param_groups:
        if group.get("lr_mult", 1.0) == 1.0 and group.get("lr_scale", 1.0) == 1.0:
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])


def _flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten the recipe for trackers' hyper-parameter tables (lists become strings)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, int | float | str | bool) else str(v)
    return out
