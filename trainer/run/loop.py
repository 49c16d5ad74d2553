"""The training loop: one function that shows every optimizer step in order, Accelerate's examples style."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from trainer.data import DataWatch, close_workers, global_sampler, set_position
from trainer.data.transforms import batch_normalizer
from trainer.errors import EXIT_BAD_INPUT, EXIT_PREEMPTED
from trainer.files import WriteError, share
from trainer.outputs.export import export_run_dir
from trainer.recipe.load import Recipe
from trainer.run.best import BEST_FILE, Best, save_best_weights
from trainer.run.build import Run, build_run, make_accelerator
from trainer.run.checkpoint import (
    CheckpointError,
    TrainerState,
    checkpoint_root,
    list_checkpoints,
    restore,
    save_checkpoint,
)
from trainer.run.ema import EMA_FILE, ModelEma
from trainer.run.evaluate import evaluate
from trainer.run.intervals import Intervals
from trainer.run.loss import mix_batch
from trainer.run.metrics import Clock, MetricsLog, WindowMeter, duration, format_line, say_once
from trainer.run.nonfinite import BufferSnapshot, NonFiniteError, NonFiniteGuard, SkipCounter
from trainer.run.run_dir import open_run_dir
from trainer.run.runtime import resolve_precision
from trainer.run.signals import StopRequest
from trainer.run.start import claim_run_dir
from trainer.run.summary import start_summary
from trainer.schedule import Schedule

__all__ = ["make_accelerator", "train"]

MAX_CONSECUTIVE_SKIPS = 25
"""Skipped updates in a row (non-finite in "skip" mode, fp16 overflow) that stop the run."""

RESUME_HINT = "checkpoint saved, continue with --resume auto"


def train(
    recipe: Recipe,
    amp: bool = False,
    resume: str | None = None,
    dataloaders: tuple[DataLoader, DataLoader | None] | None = None,
) -> int:
    """Train as `recipe` says; returns the process exit code.

    `dataloaders` replaces the recipe's data (the benchmark feeds synthetic batches through the same loop).
    """
    started = _process_start()
    cfg, tcfg = recipe.cfg, recipe.cfg["train"]
    accelerator = make_accelerator(recipe, resolve_precision(tcfg, amp))
    set_seed(cfg["seed"])
    run = build_run(recipe, accelerator, dataloaders)  # fails on bad data before anything is written
    model, optimizer, schedule, length, ema = run.model, run.optimizer, run.schedule, run.length, run.ema
    start, lock = claim_run_dir(accelerator, recipe, resume)  # one writer; never another run's folder
    output_dir = start.output_dir
    state = TrainerState()
    try:
        samples_per_step = cfg["data"]["batch_size"] * length.accumulate * accelerator.num_processes
        if start.resume_from is not None:
            load_ema = (lambda path: _load_ema(accelerator, run, path)) if ema else None
            state = restore(accelerator, start.resume_from, optimizer, schedule, run.recipe_hparams, load_ema)
            layout = f"{cfg['data']['batch_size']} per process x {accelerator.num_processes} processes"
            layout += f" x {length.accumulate} accumulate"
            state.continue_as(samples_per_step, length.accumulate, layout, start.resume_from)
        schedule.apply(optimizer, state.step)
        log = open_run_dir(accelerator, recipe, start, state)
        resumed_at = state.step if start.resume_from is not None else None
        say_once(accelerator, start_summary(recipe, run, accelerator, output_dir, resumed_at), flush=True)
    except BaseException:
        lock.release()
        raise
    due = Intervals(cfg, length, can_eval=run.eval_dl is not None)
    clip = cfg.get("clip_grad")
    fp16 = accelerator.mixed_precision == "fp16"
    skip_nonfinite = tcfg["on_nonfinite"] == "skip"
    guard = NonFiniteGuard(accelerator.device, state.step, enabled=not skip_nonfinite)
    skips = SkipCounter(MAX_CONSECUTIVE_SKIPS, total=state.skipped_steps)  # counts go on after a resume
    kept_buffers = BufferSnapshot(model) if skip_nonfinite else None  # a skipped step keeps BatchNorm's too
    meter = WindowMeter(accelerator, samples_per_step, state)
    progress = _progress_bar(accelerator, length.total_steps, state.step)
    watch = DataWatch(run.train_dl, run.eval_dl)  # unreadable images, counted by the data workers
    stop = StopRequest(accelerator, tcfg["signal_check_every"])
    stop.install()
    normalize = batch_normalizer(run.train_dl, accelerator.device)  # uint8 batches: on the device, as timm
    grad_norm = None
    best, last_eval = Best.of(cfg["checkpoint"], state.best), None
    clock = Clock(started, length.total_steps)
    clock.loop_starts(state.step)

    def save() -> None:
        guard.check(accelerator)  # never checkpoint weights that saw a NaN
        state.meter, state.skipped_steps = meter.state_dict(accelerator), skips.total
        state.mark_position(samples_per_step, length.accumulate)
        _save(accelerator, state, schedule, recipe, ema)

    try:
        model.train()
        for images, labels in epoch_batches(accelerator, run.train_dl, state, length.total_steps):
            # Accelerate divides every loss by `accumulate`; a short last window is rescaled to its mean.
            window = length.window(state.batches_done)
            if kept_buffers is not None and state.batches_done % length.accumulate == 0:
                kept_buffers.take()  # the buffers as the window found them
            finite = True
            images, targets = normalize(images), labels
            if run.mixup is not None:  # a function of (seed, step, micro-batch): the same after a resume
                images, targets = mix_batch(run.mixup, images, labels, cfg["seed"], state)
            with accelerator.accumulate(model):
                logits = model(images)
                loss = run.criterion(logits, targets)
                accelerator.backward(
                    loss * (length.accumulate / window) if window != length.accumulate else loss
                )
                meter.add(loss)
                # Accelerate's step/zero_grad do nothing inside a window; calling them costs ~0.1 ms each.
                if accelerator.sync_gradients:
                    guard.observe(meter.loss_sum)  # a NaN in any micro-batch of the window stays in the sum
                    grad_norm = clip_gradients(accelerator, model, clip, measure=skip_nonfinite)
                    if grad_norm is not None and not fp16:  # fp16 overflows are the scaler's business
                        guard.observe(grad_norm)
                    if skip_nonfinite:
                        finite = bool(torch.isfinite(grad_norm))  # the one host sync "skip" costs
                    if finite:
                        optimizer.step()
                    elif kept_buffers is not None:
                        kept_buffers.put_back()
                    optimizer.zero_grad(set_to_none=True)
            state.batches_done += 1
            if not accelerator.sync_gradients:
                continue
            # A skipped update (fp16 overflow, non-finite in "skip" mode) is not a step: the schedule stays
            # in step with real updates.
            updated = finite and not (fp16 and accelerator.optimizer_step_was_skipped)
            if updated:
                state.step += 1
                guard.end_step()
                schedule.apply(optimizer, state.step)
                if ema is not None:
                    ema.update(state.step)
                progress.update(1)
            skips.record(updated, state.step)
            end_of_epoch = state.batches_done >= length.batches_per_epoch
            if due.log_due(state, updated):
                guard.check(accelerator)
                record = {
                    "step": state.step,
                    "epoch": length.epochs_done(state.epoch, state.batches_done),
                }
                record.update(skipped_steps=skips.total, bad_samples=watch.total())
                _log_step(accelerator, log, progress, record, meter, optimizer, grad_norm, clock)
            if end_of_epoch:
                state.next_epoch()
            if due.eval_due(state, updated, end_of_epoch):
                epochs = length.epochs_done(state.epoch, state.batches_done)
                last_eval = _run_eval(
                    accelerator, model, ema, run.eval_dl, log, progress, schedule, state.step, epochs
                )
                model.train()
                if best.improved(last_eval, state.step):
                    state.best = best.state_dict()
                    if cfg["checkpoint"].get("save_best"):  # the EMA's weights for an ema_* metric
                        kept = ema.module if best.metric.startswith("ema_") else model
                        path = save_best_weights(accelerator, kept, output_dir, best)
                        say_once(
                            accelerator, f"best {best.metric} {best.value:.4f} at step {best.step}: {path}"
                        )
            if due.checkpoint_due(state, updated, end_of_epoch):
                save()
            if updated and not due.done(state) and stop.should_stop(state.step, watch.fatal() is not None):
                save()
                return _stopped(accelerator, stop, watch, state)
            if due.done(state):
                break
        guard.check(accelerator)
        _save_final_weights(accelerator, model, ema, output_dir)
        end = _end_line(output_dir, state.step, last_eval, best, cfg, clock.elapsed())
        say_once(accelerator, end, flush=True)
        return 0
    except NonFiniteError as err:
        kept = list_checkpoints(checkpoint_root(output_dir))
        last = f" (last checkpoint: {kept[-1]})" if kept else ""
        _say(accelerator, f"training error: {err}; nothing was saved after it{last}")
        return 1
    except CheckpointError:
        return 1
    except WriteError as err:  # the disk said no: nothing after the last checkpoint is kept
        _say(accelerator, f"write error: {err}")
        return 1
    finally:  # close logs, data workers and the process group cleanly (no abort at exit)
        progress.close()
        stop.uninstall()
        close_workers(run.train_dl, run.eval_dl)
        lock.release()
        accelerator.end_training()


def epoch_batches(
    accelerator: Accelerator, train_dl: DataLoader, state: TrainerState, total_steps: int
) -> Iterator[Any]:
    """Micro-batches from where `state` stands, epoch after epoch, until training is done.

    Each epoch's global order is a function of (seed, epoch) and each sample's augmentation of (seed, epoch,
    index); a resumed epoch starts after the micro-batches it already consumed (none of them is loaded). The
    caller counts `state.batches_done` and closes each full epoch.
    """
    while state.step < total_steps:
        if global_sampler(train_dl) is not None:
            set_position(train_dl, state.epoch, state.batches_done)
            yield from train_dl
        else:  # batches made elsewhere (the benchmark's synthetic data)
            train_dl.set_epoch(state.epoch)
            skip = state.batches_done
            yield from accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
        if state.batches_done:  # the loader ended before the epoch's count (it should not): the epoch is over
            state.next_epoch()


def clip_gradients(
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


def _progress_bar(accelerator: Accelerator, total_steps: int, step: int) -> tqdm:
    """A progress bar on the main process when stderr is a terminal (log files get the metric lines)."""
    show = accelerator.is_main_process and sys.stderr.isatty()
    return tqdm(total=total_steps, initial=step, disable=not show, dynamic_ncols=True)


def _log_step(
    accelerator: Accelerator,
    log: MetricsLog,
    progress: tqdm,
    record: dict[str, Any],
    meter: WindowMeter,
    optimizer: torch.optim.Optimizer,
    grad_norm: torch.Tensor | None,
    clock: Clock,
) -> None:
    """Write one step record (mean loss over the window, lr, speed, grad norm; skipped updates and bad
    samples where there were any) and its line."""
    counts = {k: record.pop(k) for k in ("skipped_steps", "bad_samples") if k in record}
    window = meter.record(accelerator, record["step"])
    record.update(loss=window["loss"], lr=_base_lr(optimizer), samples_per_sec=window["samples_per_sec"])
    if grad_norm is not None:
        record["grad_norm"] = float(grad_norm)
    record.update({k: v for k, v in counts.items() if v})
    log.write(record)
    progress.set_postfix(
        loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", sps=f"{record['samples_per_sec']:.0f}"
    )
    if accelerator.is_main_process:
        progress.write(f"{format_line(record, progress.total)}  {clock.fields(record['step'])}")


def _run_eval(
    accelerator: Accelerator,
    model: torch.nn.Module,
    ema: ModelEma | None,
    eval_dl: DataLoader,
    log: MetricsLog,
    progress: tqdm,
    schedule: Schedule,
    step: int,
    epochs: float,
) -> dict[str, Any]:
    """Evaluate the model (and its EMA: `ema_eval_top1`, ...), log the record, report the model's metrics to
    the schedule (ReduceOnPlateau) and return the record."""
    metrics = evaluate(model, eval_dl, accelerator)
    record = {"step": step, "epoch": epochs if epochs % 1 else int(epochs), **metrics}
    if ema is not None:
        record.update({f"ema_{k}": v for k, v in evaluate(ema.module, eval_dl, accelerator).items()})
    log.write(record)
    if accelerator.is_main_process:
        progress.write(format_line(record, progress.total))
    for name, value in (("loss", metrics["eval_loss"]), *metrics.items()):
        schedule.report_metric(name, value, step)
    return record


def _end_line(
    output_dir: Path,
    step: int,
    last_eval: dict[str, Any] | None,
    best: Best,
    cfg: dict[str, Any],
    seconds: float,
) -> str:
    """The run's last line: where the weights are, the final eval (and the best), the wall time."""
    parts = [f"done: {step} steps in {duration(seconds)}", f"weights {output_dir / 'model.safetensors'}"]
    if last_eval is not None:
        shown = ("eval_top1", "eval_top5", "eval_loss", "ema_eval_top1")
        metrics = " ".join(f"{k} {last_eval[k]:.4f}" for k in shown if isinstance(last_eval.get(k), float))
        parts.append(f"final {metrics} (step {last_eval['step']})")
    if best.value is not None:
        kept = f" ({output_dir / BEST_FILE})" if cfg["checkpoint"].get("save_best") else ""
        parts.append(f"best {best.metric} {best.value:.4f} at step {best.step}{kept}")
    return "; ".join(parts)


def _save(
    accelerator: Accelerator, state: TrainerState, schedule: Schedule, recipe: Recipe, ema: ModelEma | None
) -> None:
    """Write a checkpoint of `state` (and the EMA weights); a write failure stops the run or, with
    on_error "continue", is said."""
    state.schedule = schedule.state_dict()
    ckpt = recipe.cfg["checkpoint"]
    save_ema = (lambda folder: ema.save(folder / EMA_FILE)) if ema is not None else None
    try:
        save_checkpoint(
            accelerator, recipe.cfg["output_dir"], state, recipe.to_toml(), ckpt["max_keep"], extra=save_ema
        )
    except CheckpointError as err:
        _say(accelerator, f"checkpoint error: {err}")
        if ckpt["on_error"] == "stop":
            raise


def _save_final_weights(
    accelerator: Accelerator, model: torch.nn.Module, ema: ModelEma | None, output_dir: Path
) -> None:
    """model.safetensors (and model_ema.safetensors), keys as in the timm model's state_dict; then timm's
    config.json and the model card. A write that fails leaves no partial file and is one line (exit 1)."""
    accelerator.wait_for_everyone()
    written = [output_dir / "model.safetensors", output_dir / EMA_FILE]
    try:
        accelerator.save_model(model, str(output_dir), safe_serialization=True)
        if ema is not None and accelerator.is_main_process:
            ema.save(output_dir / EMA_FILE)
        if accelerator.is_main_process:
            share(*(path for path in written if path.exists()))
    except Exception as err:  # noqa: BLE001 - OSError, torch's RuntimeError, safetensors' SafetensorError
        if accelerator.is_main_process:
            for path in written:
                path.unlink(missing_ok=True)
        raise WriteError(output_dir / "model.safetensors", err) from None
    export_run_dir(accelerator, model, output_dir)  # config.json and README.md: a timm model folder


def _load_ema(accelerator: Accelerator, run: Run, checkpoint: Path) -> None:
    """Restore the EMA weights; a checkpoint written without EMA starts it from the restored model."""
    if (checkpoint / EMA_FILE).is_file():
        run.ema.load(checkpoint / EMA_FILE)
    else:
        run.ema.copy()
        _say(accelerator, f"{checkpoint} has no EMA weights: the EMA starts from the restored model")


def _stopped(accelerator: Accelerator, stop: StopRequest, watch: DataWatch, state: TrainerState) -> int:
    """The line and exit code of a stop after a checkpoint: a signal (75), or an unreadable image (2)."""
    error = watch.fatal()
    if error is not None:  # said by the process that read it
        print(f"{error}; checkpoint of step {state.step} saved, fix or remove it and --resume auto",
              file=sys.stderr, flush=True)  # fmt: skip
        return EXIT_BAD_INPUT
    if stop.data_error_elsewhere:
        _say(accelerator, f"stopped after step {state.step}: another process read an unreadable image")
        return EXIT_BAD_INPUT
    _say(accelerator, f"stopped by signal {stop.signum} after step {state.step}; {RESUME_HINT}")
    return EXIT_PREEMPTED


def _process_start() -> float:
    """When this process started, on time.monotonic()'s clock: a run's wall time includes its imports."""
    try:
        age = time.time() - psutil.Process().create_time()
    except (psutil.Error, OSError):
        age = 0.0
    return time.monotonic() - max(age, 0.0)


def _say(accelerator: Accelerator, line: str) -> None:
    """One line on stderr from the main process."""
    if accelerator.is_main_process:
        print(line, file=sys.stderr, flush=True)


def _base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The lr of the first group without an lr multiplier (the recipe's lr under the schedule)."""
    for group in optimizer.param_groups:
        if group.get("lr_mult", 1.0) == 1.0 and group.get("lr_scale", 1.0) == 1.0:
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])
