"""A run folder is never mixed, torn or silently replaced, and checkpoints are verified: one writer at a time,
a fresh start never reuses a run, damaged checkpoints are named, the disk's refusals are one line, every file
is strict JSON, and "skip" keeps nothing of a skipped step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from runs import (
    SGD,
    call_main,
    make_dataset,
    recipe_text,
    records,
    train_command,
    train_env,
    train_in_process,
    weights,
)
from trainer.errors import EXIT_BAD_INPUT
from trainer.files import WriteError, append_line
from trainer.run.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow

SHORT = {
    "train": "max_steps = 8\nlog_every = 1",
    "checkpoint": "interval = 4\nmax_keep = -1",
    "eval": "enabled = false",
    "optimizer": SGD,
}
"""8 steps of batch 8 on 64 samples, a checkpoint at steps 4 and 8."""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


def listing(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def strict_records(out: Path) -> list[dict]:
    """metrics.jsonl read by a strict JSON reader (NaN and Infinity rejected)."""

    def reject(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return [
        json.loads(line, parse_constant=reject) for line in (out / "metrics.jsonl").read_text().splitlines()
    ]


def train_again(recipe: Path, *args: str, capfd) -> tuple[object, str, str]:
    return call_main("train.py", [recipe, *args], capfd)


def test_a_fresh_start_into_a_finished_run_is_refused_and_changes_nothing(tmp_path, dataset, capfd):
    out = train_in_process(tmp_path, dataset, "run", capfd=capfd, **SHORT)
    before = listing(out)
    code, _, stderr = train_again(tmp_path / "run.toml", capfd=capfd)
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1, stderr
    assert ": output_dir: " in stderr and "holds a run (2 checkpoint(s), the last step_00000008" in stderr
    assert "--resume auto" in stderr and 'on_existing_output = "increment"' in stderr
    assert listing(out) == before


def test_increment_trains_a_second_run_beside_the_first(tmp_path, dataset, capfd):
    sections = {**SHORT, "train": "max_steps = 4\nlog_every = 1"}
    first = train_in_process(tmp_path, dataset, "run", capfd=capfd, **sections)
    before = listing(first)
    recipe = tmp_path / "run.toml"
    recipe.write_text('on_existing_output = "increment"\n' + recipe.read_text())
    code, stdout, stderr = train_again(recipe, capfd=capfd)
    assert code == 0, stderr[-2000:]
    assert f"{first} holds a run: this one goes to {first}-1" in stdout + stderr
    assert listing(first) == before and [r["step"] for r in records(tmp_path / "run-1")] == [1, 2, 3, 4]
    assert f'output_dir = "{first}-1"' in (tmp_path / "run-1" / "recipe.toml").read_text()


def test_resume_auto_without_a_checkpoint_drops_the_earlier_records_and_says_so(tmp_path, dataset, capfd):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in (1, 2, 3))
    )
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, out, **SHORT))
    code, stdout, stderr = train_again(recipe, "--resume", "auto", capfd=capfd)
    assert code == 0, stderr[-2000:]
    assert (
        "has no checkpoint yet: training starts at step 0 and the 3 records of the earlier start are dropped"
        in (stdout + stderr)
    )
    assert [r["step"] for r in records(out)] == list(range(1, 9)) and records(out)[0]["loss"] != 9.0


def start_paused(recipe: Path, gate: Path, *args: str, at_step: int = 4) -> subprocess.Popen:
    gate.mkdir(exist_ok=True)
    env = train_env(TRAINER_TEST_PAUSE_AT_STEP=str(at_step), TRAINER_TEST_GATE_DIR=str(gate))
    return subprocess.Popen(
        train_command(recipe, *args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_paused(proc: subprocess.Popen, gate: Path) -> None:
    deadline = time.time() + 300
    while not list(gate.glob("paused.*")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)


def test_a_second_process_on_a_folder_in_use_gets_one_line_naming_the_holder(tmp_path, dataset):
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, tmp_path / "run", imports=("pause_at_step",), **SHORT))
    first = start_paused(recipe, tmp_path / "gate")
    try:
        wait_paused(first, tmp_path / "gate")
        second = subprocess.run(
            train_command(recipe, "--resume", "auto"), env=train_env(), capture_output=True, text=True
        )
    finally:
        (tmp_path / "gate" / "go").touch()
    assert second.returncode == EXIT_BAD_INPUT and len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"is in use by another run (pid {first.pid} on host " in second.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    assert [r["step"] for r in records(tmp_path / "run")] == list(range(1, 9))  # each step once
    assert not (tmp_path / "run" / "run.lock").exists()  # released


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, dataset):
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, tmp_path / "run", imports=("pause_at_step",), **SHORT))
    first = start_paused(recipe, tmp_path / "gate", at_step=5)  # step 4's checkpoint is written
    wait_paused(first, tmp_path / "gate")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (tmp_path / "run" / "run.lock").exists()  # left behind, but no one holds it
    resumed = subprocess.run(
        train_command(recipe, "--resume", "auto"), env=train_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout + resumed.stderr and "at step 4" in resumed.stdout
    assert [r["step"] for r in records(tmp_path / "run")] == list(range(1, 9))


def damage(path: Path) -> None:
    """4 KiB of 0xFF in the middle of the file: its size stays."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))


def test_damaged_checkpoints_are_named_skipped_and_never_used(tmp_path, dataset, capfd):
    out = train_in_process(tmp_path, dataset, "run", capfd=capfd, **SHORT)
    step4, step8 = list_checkpoints(out / "checkpoints")
    damage(step8 / "model.safetensors")
    recipe = tmp_path / "run.toml"
    code, _, stderr = train_again(recipe, "--resume", str(step8), capfd=capfd)
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1, stderr
    assert "is not a sound checkpoint: model.safetensors is not what was written" in stderr
    code, stdout, stderr = train_again(recipe, "--resume", "auto", capfd=capfd)
    assert code == 0, stderr[-2000:]
    assert f"checkpoint {step8} is damaged (model.safetensors is not what was written" in stdout + stderr
    assert f"resumed from {step4} at step 4" in stdout + stderr
    assert all(torch.isfinite(t).all() for t in weights(out).values())


def test_resume_auto_refuses_when_no_checkpoint_is_sound(tmp_path, dataset, capfd):
    out = train_in_process(tmp_path, dataset, "run", capfd=capfd, **SHORT)
    for checkpoint in list_checkpoints(out / "checkpoints"):
        damage(checkpoint / "model.safetensors")
    before = (out / "metrics.jsonl").read_text()
    code, _, stderr = train_again(tmp_path / "run.toml", "--resume", "auto", capfd=capfd)
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1, stderr
    assert "no sound checkpoint in" in stderr and "step_00000004 (" in stderr and "step_00000008 (" in stderr
    assert (out / "metrics.jsonl").read_text() == before  # no fresh start appended to it


def mount_tmpfs(path: Path, size: int) -> None:
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")


def test_a_full_disk_at_the_final_weights_is_one_line_and_leaves_no_partial_file(tmp_path, dataset, capfd):
    sections = {**SHORT, "train": "max_steps = 2\nlog_every = 1", "checkpoint": "interval = 2\nmax_keep = 1"}
    sizing = train_in_process(tmp_path, dataset, "sizing", capfd=capfd, **sections)
    checkpoint = sum(p.stat().st_size for p in (sizing / "checkpoints").rglob("*") if p.is_file())
    model = (sizing / "model.safetensors").stat().st_size
    disk = tmp_path / "disk"
    mount_tmpfs(disk, checkpoint + model // 2 + 64 * 1024)  # the last checkpoint fits, the weights do not
    try:
        recipe = tmp_path / "full.toml"
        recipe.write_text(recipe_text(dataset, disk / "run", **sections))
        code, _, stderr = train_again(recipe, capfd=capfd)
        lines = stderr.strip().splitlines()
        assert code == 1 and lines[-1].startswith("write error: cannot write ") and "Traceback" not in stderr
        assert "model.safetensors" in lines[-1] and "No space left on device" in lines[-1]
        assert not (disk / "run" / "model.safetensors").exists()
        assert [p.name for p in list_checkpoints(disk / "run" / "checkpoints")] == ["step_00000002"]
        assert not list((disk / "run" / "checkpoints").glob(".tmp_*"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_line_that_does_not_fit_on_the_disk_leaves_the_file_as_it_was(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, 64 * 1024)
    try:
        log = disk / "metrics.jsonl"
        append_line(log, json.dumps({"step": 1}))
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # full
            pass
        finally:
            os.close(fd)
        before = log.read_bytes()
        with pytest.raises(WriteError, match="No space left on device"):
            append_line(log, json.dumps({"step": 2, "padding": "x" * 20000}))
        assert log.read_bytes() == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_torn_last_line_is_dropped_on_resume_with_a_note(tmp_path, dataset, capfd):
    out = train_in_process(
        tmp_path, dataset, "run", capfd=capfd, **{**SHORT, "train": "max_steps = 4\nlog_every = 1"}
    )
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 0.3')  # a write cut by a crash
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, out, **SHORT))
    code, stdout, stderr = train_again(recipe, "--resume", "auto", capfd=capfd)
    assert code == 0, stderr[-2000:]
    assert "dropped 1 line(s) that were not whole JSON records" in stdout + stderr
    assert [r["step"] for r in strict_records(out)] == list(range(1, 9))


def test_skip_mode_writes_strict_json_and_keeps_no_buffer_of_a_skipped_step(tmp_path, dataset):
    """test_resnet (BatchNorm) on in-memory batches, the third one NaN, and a NaN eval set."""
    from accelerate.state import AcceleratorState, GradientState
    from torch.utils.data import DataLoader, TensorDataset

    from trainer.recipe.load import load_recipe
    from trainer.run.loop import train

    out = tmp_path / "run"
    recipe = tmp_path / "run.toml"
    recipe.write_text(
        recipe_text(
            dataset,
            out,
            model='name = "test_resnet"\nnum_classes = 4',
            train='max_steps = 8\nlog_every = 1\non_nonfinite = "skip"',
            checkpoint="interval = 1\nmax_keep = -1",
        )
    )
    images = torch.randn(72, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    images[16:24] = float("nan")
    train_loader = DataLoader(TensorDataset(images, torch.arange(72) % 4), batch_size=8)
    eval_loader = DataLoader(TensorDataset(torch.full((8, 3, 16, 16), float("nan")), torch.arange(8) % 4))
    try:
        assert train(load_recipe(recipe), dataloaders=(train_loader, eval_loader)) == 0
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    logged = strict_records(out)  # every line strict JSON
    evals = [r for r in logged if "eval_loss" in r]
    assert evals and all(r["eval_loss"] is None and "eval_loss" in r["nonfinite"] for r in evals)
    assert [r["step"] for r in logged if "loss" in r] == list(range(1, 9))
    for folder in [*list_checkpoints(out / "checkpoints"), out]:
        tensors = load_file(str(folder / "model.safetensors"))
        assert all(torch.isfinite(t.float()).all() for t in tensors.values()), folder
    final = weights(out)
    counts = {k: int(v) for k, v in final.items() if k.endswith("num_batches_tracked")}
    assert counts and set(counts.values()) == {8}  # 9 forward passes, the skipped one's not counted


def test_a_recipe_with_a_byte_order_mark_loads(tmp_path, dataset):
    from trainer.recipe.load import load_recipe

    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + recipe_text(dataset, tmp_path / "run").encode())
    assert load_recipe(path).cfg["model"]["name"] == "test_vit"


def test_a_base_that_is_not_a_toml_file_says_so(tmp_path):
    from trainer.errors import RecipeError
    from trainer.recipe.load import load_recipe

    path = tmp_path / "r.toml"
    path.write_text('base = "/etc/hostname"\n')
    with pytest.raises(RecipeError, match="not a .toml file: '/etc/hostname'"):
        load_recipe(path)


def test_a_data_path_too_long_for_the_file_system_is_one_shortened_line(tmp_path, dataset, capfd):
    recipe = tmp_path / "long.toml"
    recipe.write_text(recipe_text(Path("/tmp/" + "x" * 5000), tmp_path / "run"))
    code, _, stderr = train_again(recipe, capfd=capfd)
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert ": data.path: cannot look up " in stderr and "(5005 characters): File name too long" in stderr
    assert len(stderr) < 400


def test_values_legal_but_almost_surely_not_meant_get_one_warning_line_each(tmp_path, dataset, capfd):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        recipe_text(
            dataset,
            tmp_path / "tiny",
            model='name = "test_resnet"\nnum_classes = 4',
            data=f'path = "{dataset}"\nbatch_size = 8\nnum_workers = 0\nimage_size = 4\ndrop_last = false',
            train="max_steps = 1\nlog_every = 1\naccumulate = 16",
            eval="enabled = false",
        )
    )
    code, _, stderr = train_again(recipe, capfd=capfd)
    assert code == 0, stderr[-2000:]
    warnings = [line for line in stderr.splitlines() if " warning: " in line]
    assert len(warnings) == 2, stderr
    assert "data.image_size = 4 is below what test_resnet can look at (16 pixels" in warnings[0]
    assert "train.accumulate = 16 is more than the 8 micro-batches of an epoch" in warnings[1]


def test_a_corrupt_first_image_is_skipped_like_any_other(tmp_path, capfd):
    from PIL import Image

    root = tmp_path / "images"
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (8, 8), (120 * c, 40, 40)).save(root / f"c{c}" / f"{i:02d}.png")
    (root / "c0" / "00.png").write_bytes(b"not an image")  # the first row of the split
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        recipe_text(
            root,
            tmp_path / "run",
            model='name = "test_resnet"\nnum_classes = 2',
            data=f'path = "{root}"\nbatch_size = 4\nnum_workers = 0\nimage_size = 8\neval_split = "none"',
            train="max_steps = 2\nlog_every = 1",
        )
    )
    code, _, stderr = train_again(recipe, capfd=capfd)
    assert code == 0, stderr[-2000:]
    assert "data warning: unreadable image" in stderr and "c0/00.png" in stderr


def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped_white():
    import numpy as np
    import timm
    from PIL import Image

    from trainer.data.transforms import build_transforms

    model = timm.create_model("test_resnet", num_classes=2)
    _, eval_tf = build_transforms(model, image_size=8, augment={})
    image = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    assert image.mode == "I;16"
    pixels = eval_tf({"image": [image], "label": [0]})["pixel_values"][0]
    assert pixels.dtype == torch.uint8 and abs(float(pixels.float().mean()) - 128) <= 1


def test_an_empty_class_folder_gets_one_warning_line(tmp_path, capfd):
    from PIL import Image

    from trainer.data import load_splits

    root = tmp_path / "images"
    for name, count in (("cat", 3), ("dog", 0), ("eel", 2)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8)).save(root / name / f"{i}.png")
    capfd.readouterr()
    load_splits({"path": str(root), "batch_size": 1, "eval_split": "none"}, seed=0)
    err = capfd.readouterr().err
    assert err.count("data warning:") == 1 and "class folder(s) 'dog' hold no image" in err


def test_a_checkpoint_from_before_content_hashes_still_resumes(tmp_path, dataset, capfd):
    """A manifest of sizes only (written before hashes) is checked by sizes."""
    sections = {**SHORT, "train": "max_steps = 4\nlog_every = 1"}
    out = train_in_process(tmp_path, dataset, "run", capfd=capfd, **sections)
    (checkpoint,) = list_checkpoints(out / "checkpoints")
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"] = {name: entry["size"] for name, entry in manifest["files"].items()}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    recipe = tmp_path / "run.toml"
    recipe.write_text(recipe_text(dataset, out, **SHORT))
    code, stdout, stderr = train_again(recipe, "--resume", "auto", capfd=capfd)
    assert code == 0 and f"resumed from {checkpoint} at step 4" in stdout + stderr, stderr[-2000:]
