"""Runs that survive clusters: signals, kills during checkpoint writes, full disks, NaNs, bad resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from runs import (
    SGD,
    TRAIN,
    assert_same_weights,
    make_dataset,
    recipe_text,
    records,
    run,
    train_command,
    train_env,
    train_run,
    weights,
)
from trainer.checkpoint import is_complete, list_checkpoints
from trainer.errors import EXIT_PREEMPTED

pytestmark = pytest.mark.slow

# 64 samples / batch 8 = 8 steps per epoch; 24 steps in all, a checkpoint every 4 steps.
LONG = {
    "train": "max_steps = 24\nlog_every = 1",
    "checkpoint": "interval = 4\nmax_keep = -1",
    "eval": "enabled = false",
    "optimizer": SGD,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dataset) -> Path:
    """The uninterrupted run every interrupted one must reproduce."""
    return train_run(tmp_path_factory.mktemp("ref"), dataset, "reference", **LONG)


def wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 500) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        metrics = out / "metrics.jsonl"
        if metrics.exists() and any(r.get("step", 0) >= step for r in records(out)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout} s")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun's workers live in their own sessions, so killpg misses them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def start(recipe: Path, *args: str, nproc: int = 1) -> subprocess.Popen:
    command = train_command(recipe, *args, nproc=nproc)
    if nproc > 1:  # as scripts/slurm_train.sh: the launcher ignores SIGUSR1, its workers handle it
        command = ["bash", "-c", 'trap "" USR1; exec "$@"', "launcher", *command]
    return subprocess.Popen(
        command,
        env=train_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(tmp_path, dataset, reference, sig):
    out = tmp_path / "run"
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, out, **LONG))
    proc = start(recipe)
    wait_for_step(out, 6, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=500)
    assert proc.returncode == EXIT_PREEMPTED, stderr
    assert "continue with --resume auto" in stderr and "Traceback" not in stderr
    stopped_at = list_checkpoints(out / "checkpoints")[-1]
    assert 6 <= int(stopped_at.name.split("_")[1]) < 24
    run(recipe, "--resume", "auto")
    assert_same_weights(reference, out, atol=0)


def test_two_processes_stop_together_on_sigusr1_and_resume_exactly(tmp_path, dataset, reference):
    out = tmp_path / "ddp"
    recipe = tmp_path / "ddp.toml"
    sections = {
        **LONG,
        "data": f'path = "{dataset}"\nbatch_size = 4\nnum_workers = 0\naugment = {{ no_aug = true }}',
        "train": "max_steps = 24\nlog_every = 1\nsignal_check_every = 2",
    }
    recipe.write_text(recipe_text(dataset, out, **sections))
    proc = start(recipe, nproc=2)
    wait_for_step(out, 5, proc)
    for pid in [proc.pid, *descendants(proc.pid)]:  # as SLURM does: every process of the job step
        os.kill(pid, signal.SIGUSR1)
    stdout, stderr = proc.communicate(timeout=500)
    assert "exitcode  : 75" in stderr or "exitcode: 75" in stderr.replace(" ", ""), stderr[-3000:]
    step = int(list_checkpoints(out / "checkpoints")[-1].name.split("_")[1])
    assert step % 2 == 0 and 6 <= step < 24
    run(recipe, "--resume", "auto", nproc=2)
    # 2 processes x batch 4 is 1 process x batch 8: same samples per step, averaged by DDP
    assert_same_weights(reference, out, atol=1e-5)


KILL_POINTS = {
    "before_save_state": ("accelerator", "save_state", "before"),
    "after_save_state": ("accelerator", "save_state", "after"),
    "after_manifest": ("checkpoint", "_fsync_dir", "before"),
    "before_rename": ("checkpoint", "os.replace", "before"),
    "after_rename": ("checkpoint", "_prune", "before"),
}

KILLER = """
import os, runpy, signal, sys
import accelerate
import trainer.checkpoint as checkpoint

point, when, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
target, name = (accelerate.Accelerator, "save_state") if point == "accelerator" else (checkpoint, sys.argv[4])
holder, attr = (checkpoint.os, "replace") if name == "os.replace" else (target, name)
original = getattr(holder, attr)

def wrapped(*args, **kwargs):
    text = " ".join(map(str, args))
    armed = f"step_{step:08d}" in text or (name == "_prune" and os.path.isdir(os.environ["FINAL"]))
    if armed and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if armed and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(holder, attr, wrapped)
sys.argv = ["train.py", *sys.argv[5:]]
runpy.run_path(os.environ["TRAIN_SCRIPT"], run_name="__main__")
"""


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_during_a_checkpoint_write_never_leaves_a_checkpoint_resume_would_pick(
    tmp_path, dataset, reference, point
):
    holder, name, when = KILL_POINTS[point]
    out = tmp_path / "run"
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, out, **LONG))
    killer = tmp_path / "killer.py"
    killer.write_text(textwrap.dedent(KILLER))
    env = {**train_env(), "TRAIN_SCRIPT": str(TRAIN), "FINAL": str(out / "checkpoints" / "step_00000008")}
    proc = subprocess.run(
        [sys.executable, str(killer), holder, when, "8", name, str(recipe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    complete = list_checkpoints(out / "checkpoints")
    assert complete and all(is_complete(p) for p in complete)
    assert int(complete[-1].name.split("_")[1]) in (4, 8)  # the one being written only counts once whole
    run(recipe, "--resume", "auto")
    assert_same_weights(reference, out, atol=0)


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")


@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "4500k")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("on_error", ["stop", "continue"])
def test_full_disk_reports_one_line_and_keeps_the_previous_checkpoint(tmp_path, dataset, tiny_disk, on_error):
    out = tiny_disk / "run"
    recipe = tmp_path / "run.toml"
    # One checkpoint of this model and its AdamW state takes ~2.9 MB: the first fits, the second does not.
    recipe.write_text(
        recipe_text(
            dataset,
            out,
            train="max_steps = 8\nlog_every = 1",
            eval="enabled = false",
            checkpoint=f'interval = 4\nmax_keep = -1\non_error = "{on_error}"',
        )
    )
    proc = subprocess.run(train_command(recipe), env=train_env(), capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "checkpoint error" in line]
    assert len(errors) >= 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "No space left on device" in errors[0] and "step_00000004 is kept" in errors[0]
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000004"]
    assert not list((out / "checkpoints").glob(".tmp_*"))
    assert max(r["step"] for r in records(out)) == 8
    if on_error == "stop":
        assert proc.returncode == 1
        assert not (out / "model.safetensors").exists()
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (out / "model.safetensors").exists()


def test_unwritable_output_directory_is_one_line_and_exit_2(tmp_path, dataset):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, blocker / "run", train="max_steps = 2\nlog_every = 1"))
    proc = subprocess.run(train_command(recipe), env=train_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("recipe error: ")
    assert ": output_dir: cannot write the run directory" in proc.stderr and "Traceback" not in proc.stderr


def train_in_process(tmp_path: Path, dataset: Path, poisoned_batch: int, **sections: str):
    """Run the real loop on in-memory batches where one micro-batch holds NaN pixels; return (code, out)."""
    from accelerate.state import AcceleratorState, GradientState
    from torch.utils.data import DataLoader, TensorDataset

    from trainer.loop import train
    from trainer.recipe import load_recipe

    out = tmp_path / "run"
    path = tmp_path / "run.toml"
    path.write_text(recipe_text(dataset, out, **sections))
    recipe = load_recipe(path)
    images = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    images[poisoned_batch * 8 : (poisoned_batch + 1) * 8] = float("nan")
    labels = torch.arange(64) % 4
    loader = DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=False)
    try:
        code = train(recipe, dataloaders=(loader, None))
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    return code, out


def test_nonfinite_loss_stops_naming_the_step_and_saves_nothing_after_it(tmp_path, dataset, capfd):
    sections = {
        "train": "max_steps = 8\nlog_every = 4",
        "checkpoint": "interval = 1\nmax_keep = -1",
        "eval": "enabled = false",
    }
    code, out = train_in_process(tmp_path, dataset, poisoned_batch=2, **sections)
    assert code == 1
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("training error")]
    assert lines == [
        f"training error: non-finite loss or gradient norm in step 3; nothing was saved after it "
        f"(last checkpoint: {out / 'checkpoints' / 'step_00000002'})"
    ]
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000001", "step_00000002"]
    assert not (out / "model.safetensors").exists()


def test_nonfinite_skip_mode_skips_the_update_and_trains_on(tmp_path, dataset):
    sections = {
        "train": 'max_steps = 8\nlog_every = 1\non_nonfinite = "skip"',
        "checkpoint": None,
        "eval": "enabled = false",
    }
    code, out = train_in_process(tmp_path, dataset, poisoned_batch=2, **sections)
    assert code == 0
    recs = [r for r in records(out) if "loss" in r]
    assert [r["step"] for r in recs] == list(range(1, 9))  # 9 micro-batches, one skipped: still 8 steps
    assert recs[1].get("skipped_steps") is None and recs[2]["skipped_steps"] == 1
    assert all(torch.isfinite(t).all() for t in weights(out).values())


def test_a_run_that_only_skips_stops_instead_of_spinning(tmp_path, dataset):
    sections = {
        "train": 'max_steps = 8\nlog_every = 1\non_nonfinite = "skip"',
        "checkpoint": None,
        "eval": "enabled = false",
        "optimizer": 'type = "SGD"\nlr = 1e30',
    }
    code, _ = train_in_process(tmp_path, dataset, poisoned_batch=100, **sections)
    assert code == 1


def test_same_recipe_and_seed_give_the_same_weights_and_record_their_provenance(tmp_path, dataset):
    first = train_run(tmp_path, dataset, "a", train="max_steps = 4\nlog_every = 2", eval="enabled = false")
    second = train_run(tmp_path, dataset, "b", train="max_steps = 4\nlog_every = 2", eval="enabled = false")
    assert_same_weights(first, second, atol=0)
    info = json.loads((first / "run_info.json").read_text())
    assert info["seed"] == 0
    assert {"torch", "timm", "accelerate", "datasets"} <= {k for k, v in info["versions"].items() if v}
    assert "git_commit" in info
    assert (first / "recipe.toml").read_text().startswith("# resolved recipe")


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_resume_never_unpickles_code_from_a_checkpoint(tmp_path, dataset):
    out = train_run(
        tmp_path,
        dataset,
        "safe",
        train="max_steps = 2\nlog_every = 1",
        eval="enabled = false",
        checkpoint="interval = 2",
    )
    ckpt = list_checkpoints(out / "checkpoints")[-1]
    torch.save({"state": Payload()}, ckpt / "optimizer.bin")
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["optimizer.bin"] = (ckpt / "optimizer.bin").stat().st_size
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    recipe = tmp_path / "safe.toml"
    proc = subprocess.run(
        train_command(recipe, "--resume", str(ckpt)),
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert not (tmp_path / "PWNED").exists()
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("recipe error: command line: --resume: cannot load")
    )


def test_resume_auto_ignores_partial_and_unlisted_folders(tmp_path, dataset):
    out = train_run(
        tmp_path,
        dataset,
        "partial",
        train="max_steps = 4\nlog_every = 1",
        eval="enabled = false",
        checkpoint="interval = 2\nmax_keep = -1",
    )
    root = out / "checkpoints"
    shutil.copytree(root / "step_00000004", root / "step_00000009")
    (root / "step_00000009" / "model.safetensors").write_bytes(b"truncated")
    (root / ".tmp_step_00000010").mkdir()
    assert [p.name for p in list_checkpoints(root)] == ["step_00000002", "step_00000004"]
