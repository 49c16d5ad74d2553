"""Unreadable images (truncated, empty, not an image) in a real folder, loaded by real data workers: "skip"
replaces them deterministically and counts them, "stop" checkpoints and exits 2 naming the file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runs import call_main, records, train_command, train_env, weights

pytestmark = pytest.mark.slow

BAD = {"c1/truncated.jpg", "c2/empty.jpg", "c3/text.jpg"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """200 learnable 16x16 JPEGs in 4 class folders, plus three unreadable files."""
    root = tmp_path_factory.mktemp("bad") / "images"
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(50):
            pixels = rng.integers(0, 150, (16, 16, 3), dtype=np.uint8)
            pixels[(c // 2) * 8 : (c // 2 + 1) * 8, (c % 2) * 8 : (c % 2 + 1) * 8] += 100
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i:03d}.jpg")
    data = (root / "c0" / "000.jpg").read_bytes()
    (root / "c1" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "c2" / "empty.jpg").write_bytes(b"")
    (root / "c3" / "text.jpg").write_text("not an image\n")
    return root


def train(tmp_path: Path, folder: Path, name: str, *sets: str, capfd=None) -> subprocess.CompletedProcess:
    """scripts/train.py on the folder: a real process, or with `capfd` its main in this process (its data
    workers are real processes either way)."""
    recipe = tmp_path / f"{name}.toml"
    recipe.write_text(
        f'seed = 0\noutput_dir = "{tmp_path / name}"\n'
        '[model]\nname = "test_resnet"\nnum_classes = 4\n'
        f'[data]\npath = "{folder}"\nimage_size = 16\nbatch_size = 8\neval_split = "none"\n'
        "drop_last = false\n"  # every image in every epoch, the unreadable ones too
        "[train]\nepochs = 2\nlog_every = 5\n"
        '[optimizer]\ntype = "SGD"\nlr = 0.1\n'
        "[checkpoint]\ninterval = 1\n"
    )
    if capfd is not None:
        code, out, err = call_main("train.py", [recipe, "--set", *sets], capfd)
        return subprocess.CompletedProcess([recipe], code, out, err)
    return subprocess.run(
        train_command(recipe, "--set", *sets), env=train_env(), capture_output=True, text=True, timeout=600
    )


def test_skip_replaces_each_unreadable_image_warns_once_and_counts_it(tmp_path, folder, capfd):
    proc = train(tmp_path, folder, "skip", "data.num_workers=1", capfd=capfd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("data warning")]
    assert sorted(w.split("'")[1].split("images/")[1] for w in warnings) == sorted(BAD)  # once per file
    assert "Traceback" not in proc.stderr
    counts = [r.get("bad_samples", 0) for r in records(tmp_path / "skip") if "loss" in r]
    assert counts[-1] == 2 * len(BAD) and counts == sorted(counts)  # every epoch replaces all three


def test_replacements_are_the_same_with_any_number_of_workers(tmp_path, folder, capfd):
    runs = {n: train(tmp_path, folder, f"w{n}", f"data.num_workers={n}", capfd=capfd) for n in (0, 2)}
    assert all(p.returncode == 0 for p in runs.values()), [p.stderr[-2000:] for p in runs.values()]
    a, b = weights(tmp_path / "w0"), weights(tmp_path / "w2")
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_stop_checkpoints_the_last_step_and_exits_2_naming_the_file(tmp_path, folder):
    proc = train(tmp_path, folder, "stop", 'data.on_bad_sample="stop"', "data.num_workers=1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("data error: data.on_bad_sample: unreadable image '")
        and "Traceback" not in proc.stderr
    )
    assert any(f in last for f in BAD) and "--resume auto" in last
    step = int(last.split("checkpoint of step ")[1].split()[0])
    assert (tmp_path / "stop" / "checkpoints" / f"step_{step:08d}" / "manifest.json").is_file()
    assert not (tmp_path / "stop" / "model.safetensors").exists()
