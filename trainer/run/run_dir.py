"""The run directory, opened once per run: the resolved recipe, run_info.json, trackers and metrics.jsonl; on
resume, the records after the checkpoint dropped and what changed in the recipe said."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.errors import RecipeError
from trainer.outputs.run_info import flat, recipe_changes, write_run_info
from trainer.recipe.load import Recipe
from trainer.run.checkpoint import TrainerState, any_failed
from trainer.run.metrics import MetricsLog


def open_run_dir(accelerator, recipe: Recipe, resume_from: Path | None, state: TrainerState) -> MetricsLog:
    """Write recipe.toml and run_info.json (main process), start the trackers and open metrics.jsonl.

    A run directory that cannot be written stops every process with one line, none waiting on the others.
    """
    cfg = recipe.cfg
    output_dir = Path(cfg["output_dir"])
    unwritable = None
    if accelerator.is_main_process:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            recipe.save(output_dir / "recipe.toml")
            write_run_info(output_dir, cfg)
            if resume_from is not None:
                rewind_metrics(output_dir / "metrics.jsonl", state.step)
        except OSError as err:
            unwritable = err
    if any_failed(accelerator, unwritable is not None):
        raise RecipeError("output_dir", f"cannot write the run directory {str(output_dir)!r}: {unwritable}")
    log_with = cfg["train"]["log_with"]
    if log_with:
        accelerator.init_trackers(output_dir.name, config=tracker_config(cfg))
    if resume_from is not None:
        changes = recipe_changes((resume_from / "recipe.toml").read_text(), recipe.to_toml())
        accelerator.print(
            f"resumed from {resume_from} at step {state.step}"
            + (f"; recipe changed: {'; '.join(changes)}" if changes else "")
        )
    return MetricsLog(accelerator, output_dir, use_trackers=bool(log_with))


def rewind_metrics(path: Path, step: int) -> None:
    """Drop the records of steps after `step`: a run killed after its last checkpoint logged steps that the
    resumed run trains and logs again, and metrics.jsonl keeps one record of each."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)


def tracker_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The recipe flattened for trackers' hyper-parameter tables (lists become strings)."""
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in flat(cfg).items()}
