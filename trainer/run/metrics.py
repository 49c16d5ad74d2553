"""Run logs: metrics.jsonl (one JSON object per logged step), a readable line, Accelerate's trackers."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from trainer.files import append_line, strict_json


def say_once(accelerator, text: str, **kwargs: Any) -> None:
    """Print `text` on the main process of the whole run (Accelerate's print speaks once per machine, and a
    multi-node job's log holds every machine's output)."""
    if accelerator.is_main_process:
        print(text, **{"flush": True, **kwargs})


class MetricsLog:
    """Appends records to `metrics.jsonl` on the main process, each a whole line of strict JSON (a non-finite
    number is null, its key listed under "nonfinite"), and forwards them to Accelerate's trackers."""

    def __init__(self, accelerator, output_dir: str | Path, use_trackers: bool) -> None:
        self.accelerator = accelerator
        self.use_trackers = use_trackers
        self.path = Path(output_dir) / "metrics.jsonl"
        self.main = accelerator.is_main_process

    def write(self, record: dict[str, Any]) -> None:
        """Append `record`; a WriteError (the file cut back to its last whole line) when the disk says no."""
        if self.main:
            clean, nonfinite = strict_json(record)
            if nonfinite:
                clean["nonfinite"] = nonfinite
            append_line(self.path, json.dumps(clean, allow_nan=False))
        if self.use_trackers:
            scalars = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
            self.accelerator.log(scalars, step=record["step"])


class WindowMeter:
    """The training loss and speed between two log records: a loss sum on the device (no host sync per
    micro-batch), the micro-batch count, and the time and step of the last record."""

    def __init__(self, accelerator, samples_per_step: int, state: Any) -> None:
        """A window opening at `state.step`, or the one a checkpoint's `state.meter` left open."""
        self.loss_sum = torch.zeros((), device=accelerator.device)
        self.micro_batches = 0
        self.carried = 0
        """Micro-batches of every process in a window a checkpoint of another process count left open."""
        self.samples_per_step = samples_per_step
        self.last_time, self.last_step = time.perf_counter(), state.step
        if state.meter:
            self.load_state_dict(state.meter, accelerator)

    def add(self, loss: torch.Tensor) -> None:
        """Count one micro-batch's loss (a device op)."""
        self.loss_sum += loss.detach()
        self.micro_batches += 1

    def state_dict(self, accelerator) -> dict[str, Any]:
        """Every process's open loss sum and the window's micro-batches (a gather: call at sync points)."""
        sums = (
            accelerator.gather(self.loss_sum.float()[None])
            if accelerator.num_processes > 1
            else self.loss_sum[None]
        )
        return {"loss_sums": sums.tolist(), "micro_batches": self.micro_batches, "carried": self.carried}

    def load_state_dict(self, state: dict[str, Any], accelerator) -> None:
        """Reopen a checkpoint's window: each process its own sum on the same process count; on another,
        the first process carries the window's whole sum and count (the record is their mean either way)."""
        sums = [float("nan") if s is None else s for s in state["loss_sums"]]  # null: a NaN kept as JSON
        if len(sums) == accelerator.num_processes:
            self.loss_sum.fill_(sums[accelerator.process_index])
            self.micro_batches, self.carried = state["micro_batches"], state.get("carried", 0)
            return
        count = state["micro_batches"] * len(sums) + state.get("carried", 0)
        self.loss_sum.fill_(sum(sums) if accelerator.process_index == 0 else 0.0)
        self.micro_batches, self.carried = 0, count

    def record(self, accelerator, step: int) -> dict[str, float]:
        """Mean loss over every process's micro-batches since the last record, and samples/s; then reset.

        The loss is read after the all-reduce, so the window's time includes all of its queued work.
        """
        total = accelerator.reduce(self.loss_sum, "sum").item()
        mean_loss = total / (self.micro_batches * accelerator.num_processes + self.carried)
        now = time.perf_counter()
        speed = (step - self.last_step) * self.samples_per_step / (now - self.last_time)
        self.loss_sum.zero_()
        self.micro_batches, self.carried = 0, 0
        self.last_time, self.last_step = now, step
        return {"loss": mean_loss, "samples_per_sec": speed}


class Clock:
    """Wall time of a run: elapsed since it started and the time left at the pace of this start's steps."""

    def __init__(self, started: float, total_steps: int) -> None:
        """A clock of a run that started at `started` (time.monotonic()) and ends at `total_steps`."""
        self.started = self.loop_started = started
        self.first_step, self.total_steps = 0, total_steps

    def loop_starts(self, step: int) -> None:
        """The loop's first step: the pace counts from here (set-up and data loading are not steps)."""
        self.loop_started, self.first_step = time.monotonic(), step

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self, step: int) -> float | None:
        """Seconds left at this start's pace so far (evals included); None before its first step."""
        done = step - self.first_step
        if done <= 0:
            return None
        return (time.monotonic() - self.loop_started) / done * max(self.total_steps - step, 0)

    def fields(self, step: int) -> str:
        """`elapsed 1:02  eta 4:31` for a step line (a log file has no progress bar to say it)."""
        eta = self.eta(step)
        text = f"elapsed {duration(self.elapsed())}"
        return text + (f"  eta {duration(eta)}" if eta is not None else "")


def duration(seconds: float) -> str:
    """`42s`, `3:07`, `1:02:09` (h:mm:ss as tqdm, without leading zeros)."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}" if minutes else f"{secs}s"


def format_line(record: dict[str, Any], total_steps: int) -> str:
    """`step 120/1000 epoch 2 loss 1.2345 lr 1.00e-03 grad_norm 0.812 2304 samples/s` style line."""
    epoch = record["epoch"]
    parts = [
        f"step {record['step']}/{total_steps}",
        f"epoch {epoch:.2f}" if isinstance(epoch, float) else f"epoch {epoch}",
    ]
    for key, value in record.items():
        if key in ("step", "epoch"):
            continue
        if isinstance(value, float):
            if key == "lr" or (value != 0 and not math.isfinite(value)) or abs(value) < 1e-3:
                text = f"{value:.3e}"
            elif key == "samples_per_sec":
                text = f"{value:.1f}"
            else:
                text = f"{value:.4f}"
        else:
            text = str(value)
        parts.append(f"{key} {text}")
    return "  ".join(parts)
