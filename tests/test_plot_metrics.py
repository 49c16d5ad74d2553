"""scripts/plot_metrics.py: a PNG of one or several runs' curves, read from their metrics.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runs import ROOT, call_main, make_dataset, train_env, train_in_process
from trainer.outputs.curves import load_curves, run_names

PLOT = ROOT / "scripts" / "plot_metrics.py"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real runs of test_vit on the same data: one with EMA, one with another lr."""
    tmp = tmp_path_factory.mktemp("plot")
    data = make_dataset(tmp / "data")
    ema = train_in_process(tmp, data, "adamw_ema", ema="decay = 0.9", checkpoint=None)
    optimizer = 'type = "AdamW"\nlr = 3e-3\nweight_decay = 0.05'
    other = train_in_process(tmp, data, "adamw_lr3e-3", optimizer=optimizer, checkpoint=None)
    return [ema, other]


def plot(*args: str, expect: int = 0, capfd=None) -> tuple[str, str]:
    """scripts/plot_metrics.py's (stdout, stderr): a real process, or with `capfd` its main in this one."""
    if capfd is not None:
        code, out, err = call_main("plot_metrics.py", list(args), capfd)
        assert code == expect, out[-3000:] + err[-3000:]
        return out, err
    proc = subprocess.run(
        [sys.executable, str(PLOT), *map(str, args)],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, proc.stderr


def assert_png(path: Path) -> None:
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    assert image.shape[:2] == (1100, 1210) and image.std() > 0.05  # drawn, not blank


def test_one_run_writes_its_curves_beside_it(two_runs):
    stdout, _ = plot(two_runs[0])  # a real process
    assert stdout.strip() == f"wrote {two_runs[0] / 'curves.png'}"
    assert_png(two_runs[0] / "curves.png")


def test_two_runs_overlay_in_one_png(two_runs, tmp_path, capfd):
    plot(*two_runs, "--out", tmp_path / "both.png", "--title", "ema vs lr", capfd=capfd)
    assert_png(tmp_path / "both.png")


def test_curves_hold_every_metric_of_a_real_run(two_runs):
    curves = load_curves(two_runs[0])
    steps, loss = curves.loss
    assert steps.tolist() == list(range(1, 17)) and np.isfinite(loss).all()  # log_every = 1, 16 steps
    assert set(curves.eval) == {
        "eval_loss",
        "eval_top1",
        "eval_top5",
        "ema_eval_loss",
        "ema_eval_top1",
        "ema_eval_top5",
    }
    assert curves.eval["eval_top1"][0].tolist() == [8, 16]  # one eval per epoch
    assert curves.epoch_steps.tolist() == [8.0, 16.0]
    assert "ema_eval_top1" not in load_curves(two_runs[1]).eval


def test_a_resumed_runs_repeated_steps_keep_their_last_record(tmp_path):
    lines = [
        {"step": 1, "epoch": 0.5, "loss": 2.0, "lr": 0.1},
        {"step": 2, "epoch": 1.0, "loss": 1.5, "lr": 0.1},
        {"step": 2, "epoch": 1, "eval_loss": 1.4, "eval_top1": 50.0, "eval_top5": 100.0},
        {"step": 3, "epoch": 1.5, "loss": 9.9, "lr": 0.1},  # lost with the kill, logged again after resume
        {"step": 3, "epoch": 1.5, "loss": 1.2, "lr": 0.05},
        {"step": 4, "epoch": 2.0, "loss": 1.0, "lr": 0.05},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 5, "lo')
    curves = load_curves(tmp_path)
    assert curves.loss[1].tolist() == [2.0, 1.5, 1.2, 1.0] and curves.lr[1].tolist() == [0.1, 0.1, 0.05, 0.05]
    assert curves.epoch_steps.tolist() == [2.0, 4.0]


def test_run_names_are_folders_made_unique_by_their_parents(tmp_path):
    assert run_names([tmp_path / "a" / "run", tmp_path / "b" / "run"]) == ["a/run", "b/run"]
    assert run_names([tmp_path / "x", tmp_path / "y"]) == ["x", "y"]


@pytest.mark.parametrize("case", ["no_metrics", "names_mismatch", "several_without_out"])
def test_bad_input_is_one_line_exit_2(tmp_path, case, capfd):
    args = {
        "no_metrics": [tmp_path],
        "names_mismatch": [tmp_path, "--names", "a", "b", "--out", tmp_path / "x.png"],
        "several_without_out": [tmp_path, tmp_path],
    }[case]
    real = case == "no_metrics"  # one case as a real process: its exit code and stderr as a user sees them
    _, stderr = plot(*args, expect=2, capfd=None if real else capfd)
    assert stderr.count("\n") == 1, stderr
    expected = {
        "no_metrics": "not a run directory: it has no metrics.jsonl",
        "names_mismatch": "--names: got 2 names for 1 runs",
        "several_without_out": "--out PNG is needed",
    }[case]
    assert expected in stderr
