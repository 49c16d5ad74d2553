"""scripts/benchmark.py and benchmarks/: the smallest real runs, checked for shape (never for timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is a folder of the checkout, not part of the installed package

from benchmarks import data, loops, process, setup  # noqa: E402
from benchmarks.loops import OVERHEAD_MODEL, Case  # noqa: E402

SCRIPT = ROOT / "scripts" / "benchmark.py"
LOOPS = {"trainer", "accelerate", "torch"}


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_benchmark_script_times_the_three_loops_and_writes_ratios_as_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script(
        *("--models", OVERHEAD_MODEL, "--image-size", "8", "--batch-size", "2"),
        *("--precisions", "no", "--accumulate", "2", "--rounds", "1", "--windows", "2"),
        *("--window-batches", "4", "--sections", "throughput", "--json", str(out)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "a/b" in proc.stdout and "trainer/accelerate" in proc.stdout
    result = json.loads(out.read_text())
    assert {"machine", "config", "throughput", "meets_targets", "wall_s"} <= set(result)
    (row,) = result["throughput"]
    assert (row["model"], row["precision"], row["accumulate"], row["threads"]) == ("bench_tiny", "no", 2, 1)
    assert row["window_steps"] == 2 and row["windows_per_loop"] == 2
    for clock in ("wall", "cpu"):
        assert set(row[clock]["samples_per_sec"]) == LOOPS
        assert all(v > 0 for v in row[clock]["samples_per_sec"].values())
        assert all(len(w) == 2 for w in row[clock]["windows"].values())
        assert row[clock]["ratio_vs_accelerate"] > 0 and row[clock]["ratio_vs_torch"] > 0
        assert isinstance(row[clock]["meets_target"], bool)


def test_benchmark_script_rejects_an_unknown_section():
    proc = run_script("--sections", "speed")
    assert proc.returncode == 2
    assert "invalid choice: 'speed'" in proc.stderr


@pytest.mark.parametrize("model", ["test_vit", "test_convnext", "resnet18", OVERHEAD_MODEL])
def test_trainer_recipe_is_a_valid_recipe_whose_rules_match_the_model(tmp_path, model):
    from trainer.model import build_model
    from trainer.optim import build_optimizer
    from trainer.recipe.load import load_recipe

    case = Case(model=model, image_size=32, batch_size=4, accumulate=2)
    net = build_model(loops.model_cfg(case), device="meta")
    rules = loops.paramwise_rules(net)
    assert rules, "every timm model has a classifier or a stem rule"
    path = tmp_path / "recipe.toml"
    path.write_text(tomli_w.dumps(loops.trainer_recipe(case, tmp_path / "run", rules)))
    cfg = load_recipe(path).cfg
    assert cfg["train"]["max_steps"] == case.steps_per_round
    assert cfg["train"]["log_every"] == case.window_steps == 4
    optimizer = build_optimizer(net, cfg["optimizer"], cfg["paramwise"])
    assert len(optimizer.param_groups) > 1


def test_model_cfg_passes_img_size_only_to_models_that_take_it():
    assert loops.model_cfg(Case("test_vit", 48, 2))["img_size"] == 48
    assert "img_size" not in loops.model_cfg(Case("test_convnext", 48, 2))


def test_a_window_must_hold_two_micro_batches():
    with pytest.raises(ValueError, match="at least 2 micro-batches"):
        Case("test_vit", 32, 2, window_batches=1)


def test_cpu_windows_start_each_window_lookahead_fetches_late():
    case = Case("test_vit", 32, 2, accumulate=1, window_batches=2, warmup_windows=1, timed_windows=2)
    # 8 micro-batches, 4 windows of 2: warm-up, two timed, closing. Batches 5 and 6 take 3 s, the rest 1 s.
    stamps = [0, 1, 2, 3, 4, 5, 8, 11]
    samples = case.window_steps * case.samples_per_step
    # Fetch i starts micro-batch i: timed windows [2, 4) and [4, 6) take 2 s and 4 s.
    assert loops.cpu_windows(case, stamps, lookahead=0) == [samples / 2, samples / 4]
    # Fetch i + 1 starts micro-batch i (Accelerate fetches ahead): the same windows take 2 s and 6 s.
    assert loops.cpu_windows(case, stamps, lookahead=1) == [samples / 2, samples / 6]


def test_summarize_case_takes_medians_and_ratios_per_clock():
    windows = {
        "trainer": [90.0, 100.0, 110.0],
        "accelerate": [100.0, 100.0, 100.0],
        "torch": [50.0, 200.0, 125.0],
    }
    raw = {
        "case": {**Case("test_vit", 32, 2).__dict__},
        "window_steps": 8,
        "torch_threads": 1,
        "wall": windows,
        "cpu": windows,
    }
    row = loops.summarize_case(raw)
    assert row["wall"]["samples_per_sec"] == {"trainer": 100.0, "accelerate": 100.0, "torch": 125.0}
    assert row["wall"]["ratio_vs_accelerate"] == 1.0
    assert row["wall"]["ratio_vs_torch"] == 0.8
    assert row["wall"]["meets_target"] is False
    assert row["cpu"]["spread"]["accelerate"] == 0.0


def test_recommend_loader_takes_the_fewest_workers_that_do_not_starve_the_step():
    settings = [
        {"num_workers": 0, "prefetch_factor": None, "wait_fraction": 0.30, "samples_per_sec": 100.0},
        {"num_workers": 1, "prefetch_factor": None, "wait_fraction": 0.01, "samples_per_sec": 140.0},
        {"num_workers": 1, "prefetch_factor": 4, "wait_fraction": 0.01, "samples_per_sec": 141.0},
        {"num_workers": 2, "prefetch_factor": None, "wait_fraction": 0.00, "samples_per_sec": 120.0},
    ]
    assert data.recommend_loader(settings) is settings[1]
    starving = [dict(s, wait_fraction=0.5) for s in settings]
    assert data.recommend_loader(starving)["samples_per_sec"] >= 140.0


def test_setup_costs_report_groups_and_schedule_length():
    optimizer = setup.optimizer_setup_cost(depth=8, rules=10, repeat=1)
    assert [r["case"] for r in optimizer] == ["default_no_rules", "default_rules", "layer_decay_rules"]
    assert all(r["tensors"] == 8 * 12 + 8 and r["median_s"] > 0 for r in optimizer)
    assert optimizer[0]["groups"] == 1 and optimizer[1]["rules"] == 10
    schedule = setup.schedule_cost(steps=10_000, groups=4, repeat=1)
    assert schedule["total_steps"] == 10_000 and schedule["param_groups"] == 4
    assert schedule["build_s"] > 0 and schedule["apply_us"] > 0


def test_import_cost_sums_own_time_per_top_level_package():
    cost = setup.import_cost("json, email.mime.text", threads=1, top=100)
    packages = {t["package"] for t in cost["top"]}
    assert {"json", "email"} <= packages
    assert cost["total_s"] >= sum(t["seconds"] for t in cost["top"]) > 0


@pytest.mark.slow
def test_data_mode_times_the_wait_for_each_batch_of_a_real_dataset(tmp_path, tiny_parquet):
    recipe = {
        "model": {"name": "test_vit", "num_classes": 4, "img_size": 16, "patch_size": 4},
        "data": {"path": tiny_parquet, "batch_size": 8, "num_workers": 0},
        "train": {"epochs": 1},
        "optimizer": {"type": "AdamW", "lr": 1e-3},
    }
    path = tmp_path / "recipe.toml"
    path.write_text(tomli_w.dumps(recipe))
    spec = {"recipe": str(path), "settings": [{"num_workers": 0}, {"num_workers": 1}], "epochs": 2, "skip": 1}
    result = process.run_child("data", spec, threads=1)
    assert [s["num_workers"] for s in result["settings"]] == [0, 1]
    for setting in result["settings"]:
        assert setting["steps"] == 2 * 48 // 8 - 1
        assert 0 <= setting["wait_fraction"] <= 1 and setting["samples_per_sec"] > 0
        assert setting["persistent_workers"] is (setting["num_workers"] > 0)


def test_the_script_takes_every_default_from_bench_config():
    import importlib.util

    from benchmarks.run import BenchConfig

    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    config, json_path = script.parse_args([])
    assert config == BenchConfig() and json_path is None
    cases = config.cases()
    assert {(c.model, c.image_size, c.precision, c.accumulate) for c in cases} == {
        (m, s, p, a) for m, s in config.models for p in config.precisions for a in config.accumulates
    }
    assert all(c.batch_size == config.batch_size and c.rounds == config.rounds for c in cases)
