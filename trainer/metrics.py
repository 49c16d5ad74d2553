"""Run logs: metrics.jsonl (one JSON object per logged step), a readable line, Accelerate's trackers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends records to `metrics.jsonl` on the main process and forwards them to Accelerate's trackers."""

    def __init__(self, accelerator, output_dir: str | Path, use_trackers: bool) -> None:
        self.accelerator = accelerator
        self.use_trackers = use_trackers
        self.path = Path(output_dir) / "metrics.jsonl"
        self._file = self.path.open("a") if accelerator.is_main_process else None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self.use_trackers:
            scalars = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
            self.accelerator.log(scalars, step=record["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def format_line(record: dict[str, Any], total_steps: int) -> str:
    """`step 120/1000 epoch 2 loss 1.2345 lr 1.00e-03 grad_norm 0.812 2304 samples/s` style line."""
    parts = [f"step {record['step']}/{total_steps}", f"epoch {record['epoch']}"]
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
