"""Best eval so far: `checkpoint.save_best` keeps its weights (MMEngine's save_best, timm's model_best)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model

from trainer.files import WriteError, share
from trainer.run.checkpoint import any_failed

BEST_FILE = "model_best.safetensors"
DEFAULT_METRIC = "eval_top1"
"""What the end of a run reports as best when `checkpoint.save_best` is not set."""


def metric_rule(metric: str, rule: str | None) -> str:
    """Which way is better ("greater" or "less"): as set, else MMEngine's inference (less for a loss)."""
    return rule or ("less" if "loss" in metric else "greater")


@dataclass
class Best:
    """The best value of one eval metric and the step it was measured at (kept in the checkpoint)."""

    metric: str
    rule: str
    value: float | None = None
    step: int | None = None

    @classmethod
    def of(cls, checkpoint_cfg: dict[str, Any], kept: dict[str, Any] | None) -> Best:
        """The metric the recipe names (or eval_top1), continuing a checkpoint's best of the same metric."""
        metric = checkpoint_cfg.get("save_best") or DEFAULT_METRIC
        metric = DEFAULT_METRIC if metric == "auto" else metric
        best = cls(metric, metric_rule(metric, checkpoint_cfg.get("rule")))
        if kept and kept.get("metric") == best.metric and kept.get("rule") == best.rule:
            best.value, best.step = kept.get("value"), kept.get("step")
        return best

    def improved(self, record: dict[str, Any], step: int) -> bool:
        """Take `record`'s value when it beats the best so far (the first finite one always does)."""
        value = record.get(self.metric)
        if not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
            return False
        better = self.value is None or (value > self.value if self.rule == "greater" else value < self.value)
        if better:
            self.value, self.step = float(value), step
        return better

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_best_weights(accelerator, module: torch.nn.Module, output_dir: Path, best: Best) -> Path:
    """Write `module`'s weights (keys as in the timm model's state_dict) to model_best.safetensors, its
    metadata naming the metric, value and step; replaced whole or not at all."""
    path = output_dir / BEST_FILE
    failed = None
    if accelerator.is_main_process:
        tmp = path.with_name(f".{BEST_FILE}.tmp")
        metadata = {"format": "pt", "metric": best.metric, "value": repr(best.value), "step": str(best.step)}
        try:
            save_model(accelerator.unwrap_model(module), str(tmp), metadata=metadata)
            share(tmp)
            os.replace(tmp, path)
        except Exception as err:  # noqa: BLE001 - OSError, safetensors' SafetensorError
            tmp.unlink(missing_ok=True)
            failed = WriteError(path, err)
    if any_failed(accelerator, failed is not None):
        raise failed or WriteError(path, "the main process could not write it")
    return path
