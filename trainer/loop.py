"""The training loop: one function that shows every optimizer step in order, Accelerate's examples style."""

from __future__ import annotations

import math
import sys
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
    CheckpointError,
    TrainerState,
    any_failed,
    checkpoint_root,
    list_checkpoints,
    load_trainer_state,
    resolve_resume,
    save_checkpoint,
)
from trainer.data import build_dataloaders
from trainer.errors import EXIT_PREEMPTED, RecipeError
from trainer.evaluate import evaluate
from trainer.metrics import MetricsLog, format_line
from trainer.model import build_model
from trainer.nonfinite import NonFiniteError, NonFiniteGuard
from trainer.optim import build_optimizer
from trainer.recipe import Recipe
from trainer.run_info import recipe_changes, write_run_info
from trainer.runtime import resolve_precision
from trainer.schedule import build_schedule
from trainer.signals import StopRequest

# Skipped updates (non-finite in "skip" mode, fp16 overflow) do not count as steps; a run that only skips
# would never end, so this many in a row stop it.
MAX_CONSECUTIVE_SKIPS = 25


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
        try:  # safetensors for weights, torch.load(weights_only=True) for the rest: no pickle code runs
            accelerator.load_state(str(resume_from))
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is one line, not a traceback
            message = " ".join(str(err).split())[:300]
            raise RecipeError(
                "--resume", f"cannot load checkpoint {str(resume_from)!r}: {message}", file="command line"
            ) from None
        state = load_trainer_state(resume_from)
        # The current recipe wins over the checkpoint's hyper-parameters (the schedule re-applies below).
        for group, hparams in zip(optimizer.param_groups, recipe_hparams, strict=True):
            group.update(hparams)
        if state.schedule:
            schedule.load_state_dict(state.schedule)
    schedule.apply(optimizer, state.step)

    unwritable = None
    if accelerator.is_main_process:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            recipe.save(output_dir / "recipe.toml")
            write_run_info(output_dir, cfg)
        except OSError as err:
            unwritable = err
    if any_failed(accelerator, unwritable is not None):  # all processes stop, none waits on the others
        raise RecipeError("output_dir", f"cannot write the run directory {str(output_dir)!r}: {unwritable}")
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
    skip_nonfinite = tcfg["on_nonfinite"] == "skip"
    guard = NonFiniteGuard(accelerator.device, state.step, enabled=not skip_nonfinite)
    stop = StopRequest(accelerator, tcfg["signal_check_every"])
    stop.install()
    skipped_steps = consecutive_skips = 0

    progress = tqdm(
        total=total_steps,
        initial=state.step,
        disable=not (accelerator.is_main_process and sys.stderr.isatty()),
        dynamic_ncols=True,
    )
    loss_sum = torch.zeros((), device=accelerator.device)
    micro_batches = 0
    grad_norm = None
    last_log_time, last_log_step = time.perf_counter(), state.step

    def save() -> None:
        guard.check(accelerator)  # never checkpoint weights that saw a NaN
        state.schedule = schedule.state_dict()
        try:
            save_checkpoint(accelerator, output_dir, state, recipe.to_toml(), cfg["checkpoint"]["max_keep"])
        except CheckpointError as err:
            _say(accelerator, f"checkpoint error: {err}")
            if cfg["checkpoint"]["on_error"] == "stop":
                raise

    def run_eval() -> None:
        metrics = evaluate(model, eval_dl, accelerator)
        log.write({"step": state.step, "epoch": state.epoch, **metrics})
        if accelerator.is_main_process:
            progress.write(format_line({"step": state.step, "epoch": state.epoch, **metrics}, total_steps))
        for name, value in (("loss", metrics["eval_loss"]), *metrics.items()):
            schedule.report_metric(name, value, state.step)

    model.train()
    try:
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
                finite = True
                with accelerator.accumulate(model):
                    logits = model(images)
                    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
                    accelerator.backward(loss * (accumulate / window) if window != accumulate else loss)
                    loss_sum += loss.detach()
                    # Accelerate's step/zero_grad do nothing inside a window; calling them costs ~0.1 ms each.
                    if accelerator.sync_gradients:
                        guard.observe(loss_sum)  # a NaN in any micro-batch of the window stays in the sum
                        grad_norm = _clip(accelerator, model, clip, measure=skip_nonfinite)
                        if grad_norm is not None and not fp16:  # fp16 overflows are the scaler's business
                            guard.observe(grad_norm)
                        if skip_nonfinite:
                            finite = bool(torch.isfinite(grad_norm))  # the one host sync "skip" costs
                        if finite:
                            optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                micro_batches += 1
                state.batches_done += 1
                if not accelerator.sync_gradients:
                    continue
                # A skipped update (fp16 overflow, or a non-finite one in "skip" mode) is not a step:
                # the schedule stays in step with real updates.
                updated = finite and not (fp16 and accelerator.optimizer_step_was_skipped)
                if updated:
                    consecutive_skips = 0
                    state.step += 1
                    guard.end_step()
                    schedule.apply(optimizer, state.step)
                    progress.update(1)
                else:
                    skipped_steps += 1
                    consecutive_skips += 1
                    if consecutive_skips > MAX_CONSECUTIVE_SKIPS:
                        raise NonFiniteError(
                            state.step + 1, f"{consecutive_skips} updates in a row were skipped"
                        )
                end_of_epoch = state.batches_done >= batches_per_epoch
                if updated and (state.step % tcfg["log_every"] == 0 or state.step == total_steps):
                    guard.check(accelerator)
                    mean_loss = accelerator.reduce(loss_sum, "mean").item() / micro_batches
                    now = time.perf_counter()  # after the sync: the window includes all its queued work
                    record = {
                        "step": state.step,
                        "epoch": state.epoch + state.batches_done / batches_per_epoch,
                        "loss": mean_loss,
                        "lr": _base_lr(optimizer),
                        "samples_per_sec": (state.step - last_log_step)
                        * samples_per_step
                        / (now - last_log_time),
                    }
                    if grad_norm is not None:
                        record["grad_norm"] = float(grad_norm)
                    if skipped_steps:
                        record["skipped_steps"] = skipped_steps
                    _log_step(accelerator, log, progress, record, total_steps)
                    loss_sum.zero_()
                    micro_batches = 0
                    last_log_time, last_log_step = now, state.step
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
                if updated and not done and stop.should_stop(state.step):
                    save()
                    _say(
                        accelerator,
                        f"stopped by signal {stop.signum} after step {state.step}; "
                        "checkpoint saved, continue with --resume auto",
                    )
                    return _finish(accelerator, log, progress, stop, EXIT_PREEMPTED)
                if done:
                    break
            else:
                if state.batches_done:  # the loader ended early (uneven shards): the epoch is over
                    state.epoch += 1
                    state.batches_done = 0
        guard.check(accelerator)
        accelerator.wait_for_everyone()
        try:
            accelerator.save_model(model, str(output_dir), safe_serialization=True)
        except OSError as err:
            raise CheckpointError(f"cannot write the final weights to {str(output_dir)!r}: {err}") from None
    except NonFiniteError as err:
        kept = list_checkpoints(checkpoint_root(output_dir))
        _say(
            accelerator,
            f"training error: {err}; nothing was saved after it"
            + (f" (last checkpoint: {kept[-1]})" if kept else ""),
        )
        return _finish(accelerator, log, progress, stop, 1)
    except CheckpointError:
        return _finish(accelerator, log, progress, stop, 1)
    return _finish(accelerator, log, progress, stop, 0)


def _finish(accelerator: Accelerator, log: MetricsLog, progress, stop: StopRequest, code: int) -> int:
    """Close logs and the process group cleanly (no abort at exit) and return the exit code."""
    progress.close()
    log.close()
    stop.uninstall()
    accelerator.end_training()
    return code


def _say(accelerator: Accelerator, line: str) -> None:
    """One line on stderr from the main process."""
    if accelerator.is_main_process:
        print(line, file=sys.stderr, flush=True)


def _log_step(accelerator: Accelerator, log: MetricsLog, progress, record: dict, total_steps: int) -> None:
    log.write(record)
    progress.set_postfix(
        loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", sps=f"{record['samples_per_sec']:.0f}"
    )
    if accelerator.is_main_process:
        progress.write(format_line(record, total_steps))


def _clip(
    accelerator: Accelerator, model: torch.nn.Module, clip: dict[str, Any] | None, measure: bool = False
) -> torch.Tensor | None:
    """Clip as `[clip_grad]` says and return the total norm before clipping (a tensor: no host sync here);
    with `measure` and no norm clipping, only measure the norm (max_norm inf changes nothing)."""
    if clip is not None and clip["type"] == "value":
        accelerator.clip_grad_value_(model.parameters(), clip["clip_value"])
        clip = None
    if clip is None:
        return accelerator.clip_grad_norm_(model.parameters(), math.inf) if measure else None
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
