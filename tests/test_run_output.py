"""What a run says and leaves, as a user meets it: the summary at its start, step lines with elapsed time and
ETA in a log file (no terminal), one last line with the weights, final and best eval and the wall time;
`checkpoint.save_best` keeps model_best.safetensors naming its step (across a resume too); the run's
recipe.toml reads the same data from any working directory."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from runs import call_main, make_dataset, recipe_text, records, run, train_in_process

pytestmark = pytest.mark.slow

BEST = {
    "train": "epochs = 4\nlog_every = 2",
    "checkpoint": 'interval = 1\nmax_keep = -1\nsave_best = "eval_loss"',
    "optimizer": 'type = "SGD"\nlr = 0.2\nmomentum = 0.9',  # a jumpy eval loss: the best is not the last
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


@pytest.fixture(scope="module")
def logged(tmp_path_factory, dataset) -> tuple[Path, list[str]]:
    """A run of scripts/train.py as a real process, its stdout a pipe (a SLURM log): its folder and lines."""
    tmp = tmp_path_factory.mktemp("logged")
    recipe = tmp / "colours.toml"
    recipe.write_text(recipe_text(dataset, tmp / "run", **BEST))
    return tmp / "run", run(recipe).stdout.splitlines()


def test_a_run_prints_its_summary_before_the_first_step(logged):
    out, lines = logged
    first_step = next(i for i, line in enumerate(lines) if line.startswith("step "))
    summary = {line.split()[0]: line for line in lines[:first_step]}
    assert list(summary) == ["run", "model", "data", "steps", "optimizer", "schedule", "precision"]
    assert f"{out} (fresh start" in summary["run"]
    assert "test_vit: " in summary["model"] and "4 classes" in summary["model"]
    assert "64 train (train), 16 eval (validation)" in summary["data"]
    assert summary["steps"].startswith("steps      32 (4 epochs x 8); batch 8 per process x 1 process")
    assert "SGD(lr=0.2, momentum=0.9): 1 param group" in summary["optimizer"]
    assert summary["precision"] == "precision  fp32 on cpu, 1 process"


def test_step_lines_in_a_log_file_carry_elapsed_time_and_eta(logged):
    _, lines = logged
    steps = [line for line in lines if line.startswith("step ") and " loss " in line]
    assert len(steps) == 16
    pattern = r".*  elapsed (\d+s|\d+:\d\d)  eta (\d+s|\d+:\d\d)$"
    assert all(re.fullmatch(pattern, line) for line in steps), steps[0]
    assert steps[-1].endswith("eta 0s")


def test_the_last_line_names_the_weights_final_and_best_eval_and_wall_time(logged):
    out, lines = logged
    evals = [r for r in records(out) if "eval_loss" in r]
    final = evals[-1]
    best = min(evals, key=lambda r: r["eval_loss"])
    last = lines[-1]
    assert re.match(r"done: 32 steps in (\d+s|\d+:\d\d); ", last), last
    assert f"weights {out / 'model.safetensors'}; " in last
    assert f"final eval_top1 {final['eval_top1']:.4f} eval_top5 {final['eval_top5']:.4f}" in last
    assert f"(step {final['step']})" in last
    assert last.endswith(
        f"best eval_loss {best['eval_loss']:.4f} at step {best['step']} ({out / 'model_best.safetensors'})"
    )


def test_save_best_keeps_the_weights_of_the_best_eval_and_names_its_step(logged):
    out, lines = logged
    evals = [r for r in records(out) if "eval_loss" in r]
    best = min(evals, key=lambda r: r["eval_loss"])  # the first of equals: only a better value replaces
    assert best["step"] != evals[-1]["step"], "the fixture should make the best eval not the last one"
    with safe_open(str(out / "model_best.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["metric"] == "eval_loss" and int(meta["step"]) == best["step"]
    assert float(meta["value"]) == best["eval_loss"]
    kept = load_file(str(out / "model_best.safetensors"))
    at_step = load_file(str(out / "checkpoints" / f"step_{best['step']:08d}" / "model.safetensors"))
    assert kept.keys() == at_step.keys()
    assert all(torch.equal(kept[k], at_step[k]) for k in kept)
    improvements = [line for line in lines if line.startswith("best eval_loss ")]
    assert improvements[-1] == f"best eval_loss {best['eval_loss']:.4f} at step {best['step']}: " + str(
        out / "model_best.safetensors"
    )


def test_a_resumed_run_keeps_the_best_of_the_steps_before_it(logged, dataset, tmp_path, capfd):
    out, _ = logged
    best_step = int(safe_open(str(out / "model_best.safetensors"), "pt").metadata()["step"])
    resumed = tmp_path / "resumed"  # the folder as a run stopped after the best step's checkpoint left it
    shutil.copytree(out, resumed)
    for later in (resumed / "checkpoints").iterdir():
        if int(later.name.split("_")[1]) > best_step:
            shutil.rmtree(later)
    (resumed / "model.safetensors").unlink()
    # A resumed run that forgot the best so far would take its first (worse) eval as the best.
    train_in_process(tmp_path, dataset, "resumed", "--resume", "auto", capfd=capfd, **BEST)
    with (
        safe_open(str(out / "model_best.safetensors"), "pt") as a,
        safe_open(str(resumed / "model_best.safetensors"), "pt") as b,
    ):
        assert a.metadata() == b.metadata()
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


def test_save_best_of_the_ema_keeps_the_ema_weights(tmp_path, capfd):
    data = make_dataset(tmp_path / "data", n_train=32, n_eval=8)
    sections = {
        "train": "epochs = 2\nlog_every = 4",
        "checkpoint": 'interval = 1\nmax_keep = -1\nsave_best = "ema_eval_top1"\nrule = "greater"',
        "ema": "decay = 0.5",
    }
    out = train_in_process(tmp_path, data, "ema", capfd=capfd, **sections)
    with safe_open(str(out / "model_best.safetensors"), "pt") as f:
        meta, step = f.metadata(), int(f.metadata()["step"])
    assert meta["metric"] == "ema_eval_top1"
    kept = load_file(str(out / "model_best.safetensors"))
    ema = load_file(str(out / "checkpoints" / f"step_{step:08d}" / "model_ema.safetensors"))
    assert all(torch.equal(kept[k], ema[k]) for k in kept)


def test_the_runs_recipe_reads_its_data_from_any_working_directory(tmp_path, monkeypatch, capfd):
    work = tmp_path / "project"
    make_dataset(work / "data" / "colours", n_train=16, n_eval=8)
    monkeypatch.chdir(work)
    recipe = work / "r.toml"
    sections = {"train": "max_steps = 2", "checkpoint": None}
    recipe.write_text(recipe_text(Path("data/colours"), Path("runs/r"), **sections))  # relative paths
    code, _, err = call_main("train.py", [recipe], capfd)
    assert code == 0, err
    kept = (work / "runs" / "r" / "recipe.toml").read_text()
    assert f'path = "{work / "data" / "colours"}"' in kept
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = call_main("evaluate.py", [work / "runs" / "r"], capfd)
    assert code == 0, err
    assert "top1" in out
