"""scripts/train.py as a user runs it: the dry-run summary, and one-line errors with exit code 2 (a dry run,
a bad recipe and a bad flag as real processes; the other cases through the script's main in this process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runs import ROOT, TRAIN, call_main, train_env

RECIPE = """
[model]
name = "test_vit"
num_classes = 10

[data]
path = "data/digits"
batch_size = 8

[train]
epochs = 2
accumulate = 4

[optimizer]
type = "AdamW"
lr = 1e-3
weight_decay = 0.05

[[schedule]]
type = "LinearLR"
start_factor = 0.1
end = 1

[[schedule]]
type = "CosineAnnealingLR"
begin = 1
"""


def run_train(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """scripts/train.py on the CPU (train_env), so that what --amp picks does not depend on the machine."""
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def train_here(capfd, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """run_train's result from the script's main in this process (in `cwd`, on the CPU)."""
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        code, out, err = call_main("train.py", list(args), capfd)
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(args, code, out, err)


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess, key: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f": {key}: " in lines[0]
    return lines[0]


def test_dry_run_prints_the_summary(tmp_path):
    proc = run_train(str(write(tmp_path, RECIPE)), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "test_vit" in out and "parameters" in out
    assert "AdamW" in out
    assert "8 per process x 4 accumulate x 1 processes = 32 per step" in out
    assert not (tmp_path / "runs").exists()


def test_dry_run_with_amp_reports_bf16_on_cpu(tmp_path, capfd):
    proc = train_here(capfd, str(write(tmp_path, RECIPE)), "--dry-run", "--amp")
    assert proc.returncode == 0, proc.stderr
    assert "precision bf16" in proc.stdout


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("[optimizer]", "[optimzer]", "optimzer"),
        ("lr = 1e-3", 'lr = "fast"', "optimizer.lr"),
        ("accumulate = 4", "accumulate = 0", "train.accumulate"),
        ('name = "test_vit"', 'name = "test_vitt"', "model.name"),
        ("epochs = 2", "epochs = 2\nepochs = 3", "train.epochs"),
    ],
)
def test_bad_recipe_exits_2_with_one_line(tmp_path, old, new, key, capfd):
    recipe = str(write(tmp_path, RECIPE.replace(old, new)))
    real = key == "optimzer"  # one case as a real process: its exit code and stderr as a user sees them
    proc = run_train(recipe, "--dry-run") if real else train_here(capfd, recipe, "--dry-run")
    line = assert_one_line_error(proc, key)
    assert line.startswith(f"recipe error: {tmp_path / 'r.toml'}: ")


def test_bad_override_exits_2_with_one_line(tmp_path, capfd):
    proc = train_here(capfd, str(write(tmp_path, RECIPE)), "--set", "optimizer.lr=-1", "--dry-run")
    assert_one_line_error(proc, "optimizer.lr")


def test_missing_recipe_exits_2_with_one_line(tmp_path, capfd):
    proc = train_here(capfd, str(tmp_path / "missing.toml"), "--dry-run")
    assert_one_line_error(proc, "recipe")


def test_unknown_command_line_flag_exits_2_with_one_line(tmp_path):
    proc = run_train(str(write(tmp_path, RECIPE)), "--dryrun")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--dryrun" in proc.stderr
