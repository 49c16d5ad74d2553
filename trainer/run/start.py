"""How a run starts in its folder: one process at a time writes it (`RunLock`), a fresh start never reuses a
folder that holds a run, and a resume starts only from a checkpoint whose files are what was written."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import RecipeError
from trainer.run.checkpoint import checkpoint_root, damage, step_folders
from trainer.run.metrics import say_once

LOCK_FILE = "run.lock"
RUN_FILES = ("metrics.jsonl", "model.safetensors", "recipe.toml")
"""Files that mark a folder as holding a run (with checkpoints/step_N)."""


@dataclass
class Start:
    """Where and from what a run starts: `resume_from` None is step 0; `drop_records` says the folder's
    records are an earlier start's that left no checkpoint; `notes` are said once, at the start."""

    output_dir: Path
    resume_from: Path | None = None
    drop_records: bool = False
    notes: list[str] = field(default_factory=list)


def plan_start(resume: str | None, output_dir: Path, on_existing: str = "refuse") -> Start:
    """The start `--resume` (None, "auto" or a checkpoint folder) asks for in `output_dir`; a RecipeError when
    it cannot be had without mixing runs or using a damaged checkpoint. Reads, never writes."""
    if resume is None:
        if not holds_run(output_dir):
            return Start(output_dir)
        if on_existing == "increment":  # timm's train.py: runs/name-1, runs/name-2, ...
            count = 1
            while holds_run(Path(f"{output_dir}-{count}")):
                count += 1
            new = Path(f"{output_dir}-{count}")
            return Start(new, notes=[f"{output_dir} holds a run: this one goes to {new}"])
        held = lock_holder(output_dir)
        what = f"is in use by another run ({held})" if held else f"holds a run ({describe_run(output_dir)})"
        raise RecipeError(
            "output_dir",
            f"{str(output_dir)!r} {what}: continue it with --resume auto, or start a new one in another"
            ' folder (--set output_dir="...", or on_existing_output = "increment")',
        )
    if resume != "auto":
        path = Path(resume)
        problem = damage(path) if path.is_dir() else "no such folder"
        if problem is not None:
            message = f"{resume!r} is not a sound checkpoint: {problem}"
            raise RecipeError("--resume", message, file="command line")
        return Start(output_dir, path)
    notes, damaged = [], []
    for folder in reversed(step_folders(checkpoint_root(output_dir))):
        problem = damage(folder)
        if problem is None:
            return Start(output_dir, folder, notes=notes)
        damaged.append(f"{folder.name} ({problem})")
        notes.append(f"checkpoint {folder} is damaged ({problem}): skipped")
    if damaged:
        raise RecipeError(
            "--resume",
            f"no sound checkpoint in {str(checkpoint_root(output_dir))!r}: {'; '.join(damaged)}; remove the"
            " damaged ones to start over, or restore them",
            file="command line",
        )
    records = _count_records(output_dir / "metrics.jsonl")
    if records:
        return Start(
            output_dir,
            drop_records=True,
            notes=[
                f"--resume auto: {output_dir} has no checkpoint yet: training starts at step 0 and the"
                f" {records} records of the earlier start are dropped"
            ],
        )
    return Start(output_dir)


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds (part of) a run: its records, weights, recipe or checkpoints."""
    return any((folder / name).exists() for name in RUN_FILES) or bool(step_folders(checkpoint_root(folder)))


def describe_run(folder: Path) -> str:
    """A few words on the run in `folder`: its checkpoints and last logged step."""
    steps = [p.name for p in step_folders(checkpoint_root(folder))]
    records = _count_records(folder / "metrics.jsonl")
    parts = [f"{len(steps)} checkpoint(s), the last {steps[-1]}" if steps else "no checkpoint"]
    parts.append(f"{records} records in metrics.jsonl")
    if (folder / "model.safetensors").exists():
        parts.append("final weights")
    return ", ".join(parts)


def _count_records(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


class RunLock:
    """One writer per run folder: an exclusive lock (flock) on `run.lock`, held for the whole run and released
    by the kernel on any exit, even a kill; the file names the holder (host, pid, start, command)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, output_dir: Path) -> RunLock:
        """Take the lock of `output_dir` (made if missing); a RecipeError naming the holder while another
        process holds it."""
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RecipeError(
                "output_dir", f"cannot write the run directory {str(output_dir)!r}: {err}"
            ) from None
        path = output_dir / LOCK_FILE
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the kernel applies the umask
            except OSError as err:
                raise RecipeError(
                    "output_dir", f"cannot write the run directory {str(output_dir)!r}: {err}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RecipeError(
                    "output_dir",
                    f"{str(output_dir)!r} is in use by another run ({holder}): wait for it to end, or set"
                    " another output_dir",
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and our lock: take the new one
                break
            os.close(fd)
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        return cls(path, fd)

    def release(self) -> None:
        """Remove the file, then let go of the lock (in that order: no one locks a file about to go)."""
        if self.fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = -1


def lock_holder(output_dir: Path) -> str | None:
    """Who holds `output_dir`'s lock now ("pid 123 on host x since ..."), or None when no one does."""
    path = output_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        return holder
    os.close(fd)
    return None


def _read_holder(fd: int) -> str:
    try:
        info: dict[str, Any] = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that has not said who it is yet"
    return f"pid {info.get('pid')} on host {info.get('host')} since {info.get('started')}"


class _NoLock:
    """What processes other than the main one hold: the main process holds the folder for the run."""

    def release(self) -> None:
        pass


def claim_run_dir(accelerator: Any, recipe: Any, resume: str | None) -> tuple[Start, RunLock | _NoLock]:
    """Plan the start (`plan_start`) and take the folder's lock on the main process; every process gets the
    same start, or the same RecipeError. A new output_dir ("increment") goes into the recipe."""
    cfg = recipe.cfg
    start, lock, error = None, None, None
    if accelerator.is_main_process:
        try:
            start = plan_start(resume, Path(cfg["output_dir"]), cfg.get("on_existing_output", "refuse"))
            lock = RunLock.acquire(start.output_dir)
        except RecipeError as err:
            error = (err.key, err.message, err.file)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        shared = broadcast_object_list([start, error])
        start, error = shared
    if error is not None:
        raise RecipeError(*error)
    cfg["output_dir"] = str(start.output_dir)
    for note in start.notes:
        say_once(accelerator, note)
    return start, lock if lock is not None else _NoLock()
