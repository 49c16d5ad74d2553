"""The run directory: opened once per run with the resolved recipe and run_info.json (seed, library versions,
git commit); on resume, what changed in the recipe."""

from __future__ import annotations

import json
import platform
import subprocess
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from trainer.checkpoint import TrainerState, any_failed
from trainer.errors import RecipeError
from trainer.metrics import MetricsLog
from trainer.recipe import Recipe

PACKAGES = ("torch", "timm", "accelerate", "datasets", "safetensors", "trainer")


def git_commit(path: Path) -> str | None:
    """The project's git commit (with "-dirty" for uncommitted changes), or None outside a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def write_run_info(output_dir: Path, cfg: dict[str, Any]) -> None:
    """Write run_info.json: seed, versions of the core libraries, Python, and the project's commit."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    info = {
        "seed": cfg["seed"],
        "versions": versions,
        "python": platform.python_version(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
    }
    (output_dir / "run_info.json").write_text(json.dumps(info, indent=1))


def recipe_changes(old_toml: str, new_toml: str) -> list[str]:
    """Keys whose values differ between two resolved recipes, as `key: old -> new` strings."""
    old, new = _flat(tomllib.loads(old_toml)), _flat(tomllib.loads(new_toml))
    missing = object()
    return [
        f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}"
        for k in sorted(old.keys() | new.keys())
        if old.get(k, missing) != new.get(k, missing)
    ]


def _flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in _flat(cfg).items()}
