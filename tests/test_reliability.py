"""Runs that survive clusters: signals, kills during checkpoint writes, full disks, NaNs, bad resumes."""

from __future__ import annotations

import json
import math
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
from safetensors.torch import load_file

from runs import (
    SGD,
    TRAIN,
    assert_bit_equal,
    call_main,
    descendants,
    make_dataset,
    recipe_text,
    records,
    run,
    train_command,
    train_env,
    train_in_process,
    train_run,
    weights,
)
from trainer.errors import EXIT_PREEMPTED
from trainer.run.checkpoint import is_complete, list_checkpoints
from trainer.run.start import plan_start

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


def start(recipe: Path, *args: str, nproc: int = 1, env: dict[str, str] | None = None) -> subprocess.Popen:
    command = train_command(recipe, *args, nproc=nproc)
    if nproc > 1:  # as scripts/slurm_train.sh: the launcher ignores SIGUSR1, its workers handle it
        command = ["bash", "-c", 'trap "" USR1; exec "$@"', "launcher", *command]
    return subprocess.Popen(
        command,
        env=train_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("_")[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(tmp_path, dataset, reference, sig):
    """The signal arrives right after step 6 (sent by the sigterm_at_step hook: no race with a fast run)."""
    out = tmp_path / "run"
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, out, imports=("sigterm_at_step",), **LONG))
    env = train_env(TRAINER_TEST_SIGTERM_AT_STEP="6", TRAINER_TEST_SIGNAL=sig.name)
    proc = subprocess.run(train_command(recipe), env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    assert f"stopped by signal {int(sig)} after step 6; checkpoint saved, continue with --resume auto" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert [step_of(p) for p in list_checkpoints(out / "checkpoints")] == [4, 6]
    assert max(r["step"] for r in records(out)) == 6
    run(recipe, "--resume", "auto")
    assert_bit_equal(reference, out)


DDP = {
    **LONG,
    "data": 'path = "{dataset}"\nbatch_size = 4\nnum_workers = 0\naugment = {{ no_aug = true }}',
    "train": "max_steps = 12\nlog_every = 1\nsignal_check_every = 2",
}
"""2 processes x batch 4, the processes agreeing on a stop every 2 steps."""


def ddp_sections(dataset: Path) -> dict[str, str]:
    return {**DDP, "data": DDP["data"].format(dataset=dataset)}


def test_two_processes_stop_together_on_sigusr1_and_resume_exactly(tmp_path, dataset):
    reference = train_run(tmp_path, dataset, "reference", nproc=2, **ddp_sections(dataset))
    out = tmp_path / "ddp"
    recipe = tmp_path / "ddp.toml"
    recipe.write_text(recipe_text(dataset, out, imports=("pause_at_step",), **ddp_sections(dataset)))
    gate = tmp_path / "gate"
    gate.mkdir()
    # Both processes wait after step 5 until the gate opens: the signals land while the run cannot finish.
    proc = start(
        recipe, nproc=2, env=train_env(TRAINER_TEST_PAUSE_AT_STEP="5", TRAINER_TEST_GATE_DIR=str(gate))
    )
    try:
        deadline = time.time() + 500
        while len(list(gate.glob("paused.*"))) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the processes never reached step 5"
            time.sleep(0.1)
        for pid in [proc.pid, *descendants(proc.pid)]:  # as SLURM does: every process of the job step
            os.kill(pid, signal.SIGUSR1)
    finally:
        (gate / "go").touch()  # never leave the processes waiting
    _, stderr = proc.communicate(timeout=500)
    assert "exitcode  : 75" in stderr or "exitcode: 75" in stderr.replace(" ", ""), stderr[-3000:]
    # Signalled after step 5, they agree at the next check (every 2 steps): step 6, on both processes.
    assert f"stopped by signal {int(signal.SIGUSR1)} after step 6; checkpoint saved" in stderr
    assert [step_of(p) for p in list_checkpoints(out / "checkpoints")] == [4, 6]
    run(recipe, "--resume", "auto", nproc=2)
    assert_bit_equal(reference, out)  # the same number of processes: the same run, bit for bit


KILL_POINTS = {
    # point: (what is patched, its name, when the kill comes, the newest checkpoint that must survive)
    "before_save_state": ("accelerator", "save_state", "before", 4),  # step 8's folder is still empty
    "after_save_state": ("accelerator", "save_state", "after", 4),  # step 8's files, but no manifest
    "after_manifest": ("checkpoint", "_fsync_dir", "before", 4),  # manifest written, still a .tmp_ folder
    "before_rename": ("checkpoint", "os.replace", "before", 4),  # complete, but not renamed into place
    "after_rename": ("checkpoint", "_prune", "before", 8),  # renamed: step 8 is a checkpoint
}
KILLER = """
import os, runpy, signal, sys
import accelerate
import trainer.run.checkpoint as checkpoint

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
    tmp_path, dataset, reference, point, capfd
):
    holder, name, when, survivor = KILL_POINTS[point]
    out = tmp_path / "run"
    root = out / "checkpoints"
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, out, **LONG))
    killer = tmp_path / "killer.py"
    killer.write_text(textwrap.dedent(KILLER))
    env = train_env(TRAIN_SCRIPT=str(TRAIN), FINAL=str(root / "step_00000008"))
    proc = subprocess.run(
        [sys.executable, str(killer), holder, when, "8", name, str(recipe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert max(r["step"] for r in records(out)) == 8  # killed while writing step 8's checkpoint
    complete = list_checkpoints(root)
    assert [step_of(p) for p in complete] == list(range(4, survivor + 1, 4))
    assert all(is_complete(p) for p in complete)
    # The one being written only counts once renamed into place; until then it is a .tmp_ folder.
    assert (root / ".tmp_step_00000008").exists() == (survivor == 4)
    assert (root / "step_00000008").exists() == (survivor == 8)
    assert plan_start("auto", out).resume_from == root / f"step_{survivor:08d}"
    code, stdout, stderr = call_main(
        "train.py", [recipe, "--resume", "auto"], capfd
    )  # the kill is the boundary
    assert code == 0, stderr[-3000:]
    assert f"resumed from {root / f'step_{survivor:08d}'} at step {survivor}" in stdout + stderr
    assert not list(root.glob(".tmp_*"))  # the next checkpoint cleaned the partial one up
    # Steps 5 to 8 were logged before the kill and again after a resume from step 4: the same records.
    assert_bit_equal(reference, out, replays=True)


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


def test_unwritable_output_directory_is_one_line_and_exit_2(tmp_path, dataset, capfd):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, blocker / "run", train="max_steps = 2\nlog_every = 1"))
    code, _, stderr = call_main("train.py", [recipe], capfd)
    assert code == 2
    assert stderr.strip().splitlines()[-1].startswith("recipe error: ")
    assert ": output_dir: cannot write the run directory" in stderr and "Traceback" not in stderr


def train_on_batches(tmp_path: Path, dataset: Path, poisoned_batch: int, **sections: str):
    """Run the real loop on in-memory batches where one micro-batch holds NaN pixels; return (code, out)."""
    from accelerate.state import AcceleratorState, GradientState
    from torch.utils.data import DataLoader, TensorDataset

    from trainer.recipe.load import load_recipe
    from trainer.run.loop import train

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
    code, out = train_on_batches(tmp_path, dataset, poisoned_batch=2, **sections)
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
    code, out = train_on_batches(tmp_path, dataset, poisoned_batch=2, **sections)
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
    code, _ = train_on_batches(tmp_path, dataset, poisoned_batch=100, **sections)
    assert code == 1


def poisoned_run(tmp_path: Path, dataset: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path]:
    """8 steps on 2 processes x batch 4 (`on_nonfinite = mode`, a checkpoint after every step), where the
    process of rank 1 loads one NaN image in its third batch (the poison_sample hook, through the real data
    path: dataset, transform, SeededTransform, Accelerate's sharded loader); rank 0's data is clean."""
    out = tmp_path / mode
    recipe = tmp_path / f"{mode}.toml"
    sections = {
        **ddp_sections(dataset),
        # Random erasing on (as DeiT's recipe): the workers return normalized float pixels, which can be NaN.
        "data": f'path = "{dataset}"\nbatch_size = 4\nnum_workers = 0\naugment = {{ re_prob = 0.25 }}',
        "train": f'max_steps = 8\nlog_every = 1\non_nonfinite = "{mode}"',
        "checkpoint": "interval = 1\nmax_keep = -1",
    }
    recipe.write_text(recipe_text(dataset, out, imports=("poison_sample",), **sections))
    env = train_env(TRAINER_TEST_POISON_BATCH="3", TRAINER_TEST_POISON_DIR=str(tmp_path))
    proc = subprocess.run(
        train_command(recipe, nproc=2), env=env, capture_output=True, text=True, timeout=600
    )
    assert [p.name for p in tmp_path.glob("poisoned.*")] == ["poisoned.1"], proc.stderr[-3000:]
    return proc, out


def all_finite(folder: Path) -> bool:
    return all(
        torch.isfinite(t).all() for f in folder.glob("*.safetensors") for t in load_file(str(f)).values()
    )


def test_nan_on_one_of_two_processes_stops_both_naming_the_step_and_saves_nothing_after_it(tmp_path, dataset):
    proc, out = poisoned_run(tmp_path, dataset, "stop")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "exitcode  : 1" in proc.stderr or "exitcode: 1" in proc.stderr.replace(" ", "")
    root = out / "checkpoints"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("training error")]
    assert lines == [  # one line, from the main process, although rank 1 saw the NaN
        f"training error: non-finite loss or gradient norm in step 3; nothing was saved after it "
        f"(last checkpoint: {root / 'step_00000002'})"
    ]
    assert [step_of(p) for p in list_checkpoints(root)] == [1, 2]
    assert not list(root.glob(".tmp_*")) and not (root / "step_00000003").exists()
    assert all(all_finite(p) for p in list_checkpoints(root))
    assert not (out / "model.safetensors").exists()
    assert max(r["step"] for r in records(out)) == 2  # step 3's record would carry a NaN loss: not written


def test_nan_on_one_of_two_processes_is_skipped_by_both_in_skip_mode(tmp_path, dataset):
    proc, out = poisoned_run(tmp_path, dataset, "skip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training error" not in proc.stderr
    recs = [r for r in records(out) if "loss" in r]
    # 9 micro-batches, the third one's update skipped on both processes (DDP averaged its NaN gradients):
    # still 8 steps, the skip counted from step 3 on.
    assert [r["step"] for r in recs] == list(range(1, 9))
    assert [r.get("skipped_steps", 0) for r in recs] == [0, 0, 1, 1, 1, 1, 1, 1]
    assert all(math.isfinite(r["grad_norm"]) for r in recs)  # each update's own norm: finite
    # Step 3's loss is the mean of a window that holds the skipped NaN micro-batch; the others are finite.
    assert all(math.isfinite(r["loss"]) for r in recs if r["step"] != 3)
    root = out / "checkpoints"
    assert [step_of(p) for p in list_checkpoints(root)] == list(range(1, 9))
    assert all(all_finite(p) for p in list_checkpoints(root)) and all_finite(out)


def test_same_recipe_and_seed_give_the_same_run_and_record_their_provenance(tmp_path, dataset, capfd):
    sections = {"train": "max_steps = 4\nlog_every = 1", "eval": "enabled = false"}
    first = train_run(tmp_path, dataset, "a", **sections)  # a new process
    second = train_in_process(tmp_path, dataset, "b", capfd=capfd, **sections)  # another one, already warm
    assert_bit_equal(first, second)
    info = json.loads((first / "run_info.json").read_text())
    assert info["seed"] == 0
    assert {"torch", "timm", "accelerate", "datasets"} <= {k for k, v in info["versions"].items() if v}
    assert "git_commit" in info
    assert (first / "recipe.toml").read_text().startswith("# resolved recipe")


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_resume_never_unpickles_code_from_a_checkpoint(tmp_path, dataset, capfd):
    out = train_in_process(
        tmp_path,
        dataset,
        "safe",
        capfd=capfd,
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


def test_resume_auto_ignores_partial_and_unlisted_folders(tmp_path, dataset, capfd):
    out = train_in_process(
        tmp_path,
        dataset,
        "partial",
        capfd=capfd,
        train="max_steps = 4\nlog_every = 1",
        eval="enabled = false",
        checkpoint="interval = 2\nmax_keep = -1",
    )
    root = out / "checkpoints"
    shutil.copytree(root / "step_00000004", root / "step_00000009")
    (root / "step_00000009" / "model.safetensors").write_bytes(b"truncated")
    (root / ".tmp_step_00000010").mkdir()
    assert [p.name for p in list_checkpoints(root)] == ["step_00000002", "step_00000004"]
