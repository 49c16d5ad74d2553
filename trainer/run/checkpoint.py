"""Checkpoints: Accelerate's save_state plus the trainer's own position, written atomically, newest K kept."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import xxhash

from trainer.errors import RecipeError
from trainer.files import describe_write_error, dumps_strict, share

STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
HASH = "xxh3_128"
"""The content hash each manifest records per file (checked before a checkpoint is resumed from)."""
_NAME = re.compile(r"^step_(\d+)$")


@dataclass
class TrainerState:
    """Where training stands: `step` optimizer updates done, `epoch`, and micro-batches done in that epoch."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    schedule: dict[str, Any] | None = None
    meter: dict[str, Any] | None = None
    """The open log window (loss sums per process, micro-batches): the first record after a resume is the
    record the uninterrupted run writes."""
    skipped_steps: int = 0
    global_batch: int = 0
    """Samples per optimizer step when written (batch_size x processes x accumulate); 0 before it was kept."""
    samples_done: int = 0
    """Samples of this epoch's global order consumed: where a resume on any number of processes continues."""
    best: dict[str, Any] | None = None
    """The best eval so far: metric, rule, value and step (trainer.run.best.Best)."""

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batches_done = 0

    def mark_position(self, global_batch: int, accumulate: int) -> None:
        """Record the position in the epoch's global order (at the end of a step, before a checkpoint)."""
        self.global_batch = global_batch
        self.samples_done = self.batches_done // accumulate * global_batch

    def continue_as(self, global_batch: int, accumulate: int, layout: str, path: Path) -> None:
        """Continue a checkpoint's position with this start's processes and accumulation: the same global
        batch continues the same global order; another is a RecipeError saying how to keep it."""
        if not self.global_batch:  # written before positions were global: the same layout is assumed
            return
        if global_batch != self.global_batch:
            raise RecipeError(
                "--resume",
                f"{path.name} was written with a global batch of {self.global_batch} samples per step; this"
                f" start's is {global_batch} ({layout}): a resume keeps the global batch, e.g. with"
                f" {_keeping(self.global_batch, layout)}",
                file="command line",
            )
        self.batches_done = self.samples_done // global_batch * accumulate


def _keeping(global_batch: int, layout: str) -> str:
    """The --set that keeps `global_batch` on this start's processes (`layout`: "b per process x p
    processes x a accumulate")."""
    batch, processes, accumulate = (int(part.split()[0]) for part in layout.split(" x "))
    if global_batch % (processes * accumulate) == 0:
        return f"--set data.batch_size={global_batch // (processes * accumulate)}"
    if global_batch % (processes * batch) == 0:
        return f"--set train.accumulate={global_batch // (processes * batch)}"
    return "data.batch_size x processes x train.accumulate as before"


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written; the previous checkpoints are untouched."""


def save_checkpoint(
    accelerator,
    output_dir: str | Path,
    state: TrainerState,
    recipe_toml: str,
    max_keep: int,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write `checkpoints/step_N` via a temporary folder renamed into place once complete.

    Every process runs the same collectives whatever fails, so a full disk on one rank cannot hang the others;
    a failure on any rank raises CheckpointError on all of them and leaves earlier checkpoints as they were.
    """
    root = checkpoint_root(output_dir)
    final = root / f"step_{state.step:08d}"
    tmp = root / f".tmp_step_{state.step:08d}"
    main = accelerator.is_main_process

    def prepare() -> None:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)

    def finalize() -> None:
        if not main:
            return
        share(tmp)  # safetensors writes 0600: readable as the umask says, as the other files are
        (tmp / STATE_FILE).write_text(dumps_strict(asdict(state)))
        (tmp / "recipe.toml").write_text(recipe_toml)
        files = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, HASH: file_hash(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        (tmp / MANIFEST).write_text(json.dumps({"step": state.step, "files": files}, indent=1))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        _prune(root, max_keep)

    def save_state() -> None:
        accelerator.save_state(str(tmp), safe_serialization=True)
        if main and extra is not None:  # the trainer's own files (EMA weights), before the manifest
            extra(tmp)

    for phase in (prepare, save_state, finalize):
        error = None
        try:
            phase()
        except Exception as err:  # noqa: BLE001 - OSError, torch's RuntimeError, safetensors' SafetensorError
            error = describe_write_error(err, root)
        if any_failed(accelerator, error is not None):
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            kept = list_checkpoints(root)
            reason = f": {error}" if error is not None else " on another process"
            raise CheckpointError(
                f"cannot write {final}{reason}; "
                + (f"the last complete checkpoint {kept[-1]} is kept" if kept else "no earlier checkpoint")
            )
    return final


def any_failed(accelerator, failed: bool) -> bool:
    """True on every process when any process failed (doubles as the barrier between phases)."""
    if accelerator.num_processes == 1:
        return failed
    flag = torch.tensor([int(failed)], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(root: Path, max_keep: int) -> None:
    """Delete all but the newest `max_keep` complete checkpoints (-1 keeps all), and partial leftovers."""
    for partial in root.glob(".tmp_step_*"):
        shutil.rmtree(partial, ignore_errors=True)
    if max_keep < 1:
        return
    for old in list_checkpoints(root)[:-max_keep]:
        shutil.rmtree(old, ignore_errors=True)


def file_hash(path: Path) -> str:
    """The file's xxh3-128 digest, read in 8 MiB chunks (just written, from the page cache: several GB/s)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_files(path: Path) -> dict[str, dict[str, Any]] | None:
    """The manifest's files as {name: {"size", HASH}} (a manifest written before hashes: sizes only)."""
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict):
        return None
    return {name: entry if isinstance(entry, dict) else {"size": entry} for name, entry in files.items()}


def is_complete(path: Path) -> bool:
    """A checkpoint is complete when its manifest exists and every listed file has the listed size."""
    return damage(path, hashes=False) is None


def damage(path: Path, hashes: bool = True) -> str | None:
    """What is wrong with checkpoint `path` (no manifest, a file missing, of another size or, with `hashes`,
    another content than its manifest records), or None when every file is as written."""
    files = _manifest_files(path)
    if files is None:
        return f"no readable {MANIFEST}"
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != entry.get("size"):
            return f"{name} has {file.stat().st_size} bytes, the manifest says {entry.get('size')}"
        if hashes and HASH in entry and file_hash(file) != entry[HASH]:
            return f"{name} is not what was written (its {HASH} differs from the manifest's)"
    return None


def step_folders(root: Path) -> list[Path]:
    """Every step_N folder under `root`, complete or not, oldest first (by step number)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (by step number, never by mtime or name order)."""
    return [p for p in step_folders(root) if is_complete(p)]


def load_trainer_state(path: Path) -> TrainerState:
    return TrainerState(**json.loads((path / STATE_FILE).read_text()))


def restore(
    accelerator,
    path: Path,
    optimizer,
    schedule,
    recipe_hparams: list[dict[str, Any]],
    extra: Callable[[Path], None] | None = None,
) -> TrainerState:
    """Load the checkpoint at `path` into the prepared objects (weights, optimizer, RNGs, data position) and
    return where training stands; the current recipe's hyper-parameters win over the checkpoint's."""
    try:  # safetensors for weights, torch.load(weights_only=True) for the rest: no pickle code runs
        accelerator.load_state(str(path))
        if extra is not None:
            extra(path)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is one line, not a traceback
        message = " ".join(str(err).split())[:300]
        raise RecipeError(
            "--resume", f"cannot load checkpoint {str(path)!r}: {message}", file="command line"
        ) from None
    state = load_trainer_state(path)
    for group, hparams in zip(optimizer.param_groups, recipe_hparams, strict=True):
        group.update(hparams)  # the schedule re-applies on top
    if state.schedule:
        schedule.load_state_dict(state.schedule)
    return state
