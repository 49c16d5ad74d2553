"""The run directory, opened once per run: the resolved recipe, run_info.json, trackers and metrics.jsonl; on
resume, the records after the checkpoint dropped and what changed in the recipe said."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.errors import RecipeError
from trainer.files import WriteError, write_text
from trainer.outputs.run_info import recipe_changes, write_run_info
from trainer.recipe.load import Recipe
from trainer.run.checkpoint import TrainerState, any_failed
from trainer.run.metrics import MetricsLog, say_once
from trainer.run.start import Start
from trainer.run.tracking import start_trackers


def open_run_dir(accelerator, recipe: Recipe, start: Start, state: TrainerState) -> MetricsLog:
    """Write recipe.toml and run_info.json (main process), keep metrics.jsonl's records up to where the run
    starts, start the trackers and open metrics.jsonl.

    A run directory that cannot be written stops every process with one line, none waiting on the others.
    """
    cfg = recipe.cfg
    output_dir = start.output_dir
    unwritable = None
    if accelerator.is_main_process:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            write_text(output_dir / "recipe.toml", recipe.to_toml())
            write_run_info(output_dir, cfg)
            if start.resume_from is not None or start.drop_records:
                note = rewind_metrics(output_dir / "metrics.jsonl", state.step)
                if note:
                    print(note, flush=True)
        except (OSError, WriteError) as err:
            unwritable = err
    if any_failed(accelerator, unwritable is not None):
        raise RecipeError("output_dir", f"cannot write the run directory {str(output_dir)!r}: {unwritable}")
    tracking = start_trackers(accelerator, cfg, recipe.name, output_dir, state.step)
    if start.resume_from is not None:
        changes = recipe_changes((start.resume_from / "recipe.toml").read_text(), recipe.to_toml())
        say_once(
            accelerator,
            f"resumed from {start.resume_from} at step {state.step}"
            + (f"; recipe changed: {'; '.join(changes)}" if changes else ""),
        )
    return MetricsLog(accelerator, output_dir, use_trackers=tracking)


def rewind_metrics(path: Path, step: int) -> str | None:
    """Keep the records of steps up to `step` (a run killed after its last checkpoint logged steps that the
    resumed run trains and logs again; metrics.jsonl keeps one record of each) and drop a line that is not
    whole JSON (a write cut by a crash); returns a note when such a line was dropped."""
    if not path.is_file():
        return None
    lines = path.read_text().splitlines(keepends=True)
    kept, torn = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        if record.get("step", 0) <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) != len(lines):
        write_text(path, "".join(kept))
    if torn:
        return f"{path}: dropped {torn} line(s) that were not whole JSON records (a write cut short)"
    return None
