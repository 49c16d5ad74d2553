"""Elastic resume: a run stopped mid-epoch on N processes and resumed on M with the same global batch
(batch_size x processes x accumulate) lands where the uninterrupted run lands: the same global batches from
the stop on, the same schedule step, each step logged once, weights equal within float tolerance (DDP sums
the gradients in another order). Map-style, streamed shards and repeated augmentation; data workers on,
random augmentation, real processes started by scripts/launch.py. A changed global batch is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runs import ROOT, call_main, records, train_env, weights

pytestmark = pytest.mark.slow

LAUNCH = ROOT / "scripts" / "launch.py"
TRAIN = ROOT / "scripts" / "train.py"
TRAIN_ROWS = 120
"""Per epoch: 7 whole global batches of 16 and a last, shorter step of 8 rows (drop_last = false)."""
STOP = 10
"""Two steps into the second of two epochs (several processes agree on a stop every 10 steps)."""
LOSS_REL = 1e-5
WEIGHT_ATOL = 1e-6
"""Measured: 1.7e-7 and 6e-8 at most (16 steps)."""


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """An image folder of 4 learnable classes, 32x32 RGB: 120 train and 16 validation PNGs."""
    root = tmp_path_factory.mktemp("elastic") / "images"
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(4, 3))
    for split, count in (("train", TRAIN_ROWS), ("validation", 16)):
        for i in range(count):
            label = i % 4
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(colours[label] + rng.normal(0, 40, size=(32, 32, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def shards(images, tmp_path_factory) -> Path:
    """The same folder as parquet shards (3 train shards of 40 rows), for data.streaming."""
    out = tmp_path_factory.mktemp("elastic_shards")
    for split, count in (("train", "3"), ("validation", "1")):
        code, _, err = call_main("prepare_data.py", [images, out, "--split", split, "--num-shards", count])
        assert code == 0, err
    return out


def write_recipe(
    folder: Path, name: str, data_path: Path, data: str = "", length: str = "epochs = 2", hook: bool = True
):
    """A ConvNeXt (no BatchNorm: its statistics are per process) with timm's random crop and flip, eval
    every epoch, a checkpoint every epoch, every step logged; `hook` imports the test's stop hook."""
    recipe = folder / f"{name}.toml"
    imports = 'imports = ["sigterm_at_step"]\n' if hook else ""
    recipe.write_text(
        f'seed = 0\noutput_dir = "{folder / name}"\n{imports}'
        '[model]\nname = "test_convnext"\nnum_classes = 4\n'
        f'[data]\npath = "{data_path}"\nimage_size = 32\ndrop_last = false\n{data}\n'
        f'[train]\n{length}\nlog_every = 1\nprecision = "no"\n'
        '[optimizer]\ntype = "AdamW"\nlr = 2e-3\nweight_decay = 0.05\n'
        '[[schedule]]\ntype = "LinearLR"\nstart_factor = 0.1\nby_epoch = true\nend = 1\n'
        "convert_to_iter_based = true\n"
        '[[schedule]]\ntype = "CosineAnnealingLR"\nby_epoch = true\nbegin = 1\nconvert_to_iter_based = true\n'
    )
    return recipe


def layout(nproc: int, batch: int, accumulate: int = 1, workers: int = 1) -> tuple[int, list[str]]:
    sets = [f"data.batch_size={batch}", f"train.accumulate={accumulate}", f"data.num_workers={workers}"]
    return nproc, sets


def launch(recipe: Path, layout: tuple[int, list[str]], *args: str, stop_at: int | None = None, expect=0):
    """scripts/launch.py --num_processes N scripts/train.py RECIPE [args] --set LAYOUT, exit code checked."""
    nproc, sets = layout
    command = [sys.executable, str(LAUNCH), "--num_processes", str(nproc), str(TRAIN), str(recipe)]
    env = train_env(**({"TRAINER_TEST_SIGTERM_AT_STEP": str(stop_at)} if stop_at else {}))
    proc = subprocess.run(
        [*command, *args, "--set", *sets], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == expect, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def stop(folder: Path, name: str, data_path: Path, data: str, before) -> Path:
    """A run stopped by SIGTERM after step STOP (exit 75, checkpointed) on layout `before`; its recipe."""
    recipe = write_recipe(folder, name, data_path, data)
    launch(recipe, before, stop_at=STOP, expect=75)
    assert [r["step"] for r in records(folder / name) if "loss" in r][-1] == STOP
    return recipe


def stop_and_resume(folder: Path, name: str, data_path: Path, data: str, before, after) -> Path:
    """A run stopped after step STOP on layout `before`, resumed to the end on layout `after`."""
    launch(stop(folder, name, data_path, data, before), after, "--resume", "auto")
    return folder / name


def copy_of(stopped: Path, folder: Path, images: Path) -> Path:
    """A copy of the `stopped` run in `folder` (its recipe naming the copy), to resume there."""
    shutil.copytree(stopped, folder / stopped.name)
    return write_recipe(folder, stopped.name, images)


def gaps(reference: Path, run: Path) -> tuple[float, float]:
    """(max relative loss difference over the logged steps, max absolute weight difference)."""
    ref = [r for r in records(reference) if "loss" in r and "lr" in r]
    got = [r for r in records(run) if "loss" in r and "lr" in r]
    loss = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(ref, got, strict=True))
    wa, wb = weights(reference), weights(run)
    return loss, max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def assert_lands_with(reference: Path, run: Path) -> None:
    """`run` logged each step once and, step by step, the schedule and epoch of `reference` and its loss
    within LOSS_REL; each evaluation at the same steps; final weights within WEIGHT_ATOL."""
    ref, got = records(reference), records(run)
    train_steps = [r["step"] for r in got if "lr" in r]
    assert train_steps == sorted(set(train_steps)), "a step was logged twice"
    assert [(r["step"], sorted(r)) for r in got] == [(r["step"], sorted(r)) for r in ref]
    for a, b in zip(ref, got, strict=True):
        assert b["epoch"] == pytest.approx(a["epoch"], rel=1e-12), (a, b)
        if "lr" in a:
            assert b["lr"] == pytest.approx(a["lr"], rel=1e-12), (a, b)
            assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_REL), (a, b)
        else:  # an evaluation: 16 images, a prediction on the edge may flip
            assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=LOSS_REL), (a, b)
            assert abs(b["eval_top1"] - a["eval_top1"]) <= 100 / 16, (a, b)
    wa, wb = weights(reference), weights(run)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], atol=WEIGHT_ATOL, rtol=1e-5, msg=key)
    assert (run / "checkpoints").is_dir()


TWO = layout(2, 8)
ONE = layout(1, 16, workers=2)
ONE_ACCUMULATING = layout(1, 8, accumulate=2)


@pytest.fixture(scope="module")
def two_processes(images, tmp_path_factory) -> Path:
    """The uninterrupted run on 2 processes of 8 (one data worker each)."""
    folder = tmp_path_factory.mktemp("two")
    launch(write_recipe(folder, "ref", images), TWO)
    return folder / "ref"


@pytest.fixture(scope="module")
def stopped_on_two(images, tmp_path_factory) -> Path:
    """The same run stopped after step STOP (mid-epoch 2); tests resume copies of it."""
    folder = tmp_path_factory.mktemp("stopped")
    stop(folder, "run", images, "", TWO)
    return folder / "run"


def test_stopped_on_two_processes_and_resumed_on_one_lands_as_the_uninterrupted_run(
    tmp_path, images, two_processes, stopped_on_two
):
    launch(copy_of(stopped_on_two, tmp_path, images), ONE, "--resume", "auto")
    assert_lands_with(two_processes, tmp_path / "run")


def test_stopped_on_one_accumulating_process_and_resumed_on_two_lands_as_the_uninterrupted_run(
    tmp_path, images
):
    reference = write_recipe(tmp_path, "ref", images)
    launch(reference, ONE_ACCUMULATING)
    run = stop_and_resume(tmp_path, "run", images, "", ONE_ACCUMULATING, TWO)
    assert_lands_with(tmp_path / "ref", run)


def test_streamed_shards_resume_on_another_process_count_in_the_same_global_order(tmp_path, shards):
    streamed = "streaming = true\nshuffle_buffer = 8"  # blocks of 8 rows: 15 blocks in 3 shards
    launch(write_recipe(tmp_path, "ref", shards, streamed), TWO)
    run = stop_and_resume(tmp_path, "run", shards, streamed, TWO, ONE)
    assert_lands_with(tmp_path / "ref", run)


def test_repeated_augmentation_resumes_on_another_process_count_in_the_same_global_order(tmp_path, images):
    repeated = "repeated_augmentation = 3"
    launch(write_recipe(tmp_path, "ref", images, repeated), ONE)
    run = stop_and_resume(tmp_path, "run", images, repeated, ONE, TWO)
    assert_lands_with(tmp_path / "ref", run)


def test_a_resume_that_changes_the_global_batch_is_one_line_and_changes_nothing(
    tmp_path, images, stopped_on_two
):
    recipe = copy_of(stopped_on_two, tmp_path, images)
    out = tmp_path / "run"
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "run.lock"}
    proc = launch(recipe, layout(1, 8), "--resume", "auto", expect=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "global batch of 16" in lines[0]
    assert "is 8 (8 per process x 1 processes x 1 accumulate)" in lines[0]
    assert "--set data.batch_size=16" in lines[0]
    after = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "run.lock"}
    assert after == before


def test_a_run_that_ends_mid_epoch_evaluates_checkpoints_and_writes_its_weights(tmp_path, images, capfd):
    recipe = write_recipe(tmp_path, "run", images, length=f"max_steps = {STOP}", hook=False)
    code, _, err = call_main("train.py", [recipe, "--set", *ONE[1]], capfd)  # where the end falls is all
    assert code == 0, err[-3000:]
    log = records(tmp_path / "run")
    assert log[-1]["step"] == STOP and "eval_top1" in log[-1]  # the final eval, after the last step
    assert [r["step"] for r in log if "lr" in r][-1] == STOP
    assert (tmp_path / "run" / "checkpoints" / f"step_{STOP:08d}").is_dir()
    assert (tmp_path / "run" / "model.safetensors").is_file()
