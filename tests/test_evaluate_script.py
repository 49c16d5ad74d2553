"""scripts/evaluate.py: the loop's own numbers for the same weights, on one or two processes, as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

from runs import ROOT, call_main, make_dataset, records, train_env, train_in_process

EVALUATE = ROOT / "scripts" / "evaluate.py"
LAUNCH = ROOT / "scripts" / "launch.py"


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_vit, 2 epochs of 8 steps, with EMA: metrics.jsonl's last record is the final eval."""
    tmp = tmp_path_factory.mktemp("evaluate")
    return train_in_process(tmp, make_dataset(tmp / "data"), "vit", ema="decay = 0.9")


def evaluate(
    *args: str, nproc: int = 1, expect: int = 0, capfd=None, launcher: str = "torchrun"
) -> tuple[str, str]:
    """scripts/evaluate.py's (stdout, stderr): as a real process (with `nproc` > 1 under torchrun, or
    scripts/launch.py with `launcher="launch.py"`), or with `capfd` its main in this process (what it
    computes; the exit code and output are the same)."""
    if capfd is not None and nproc == 1:
        code, out, err = call_main("evaluate.py", list(args), capfd)
        assert code == expect, out[-3000:] + err[-3000:]
        return out, err
    command = [sys.executable]
    if nproc > 1 and launcher == "launch.py":
        command += [str(LAUNCH), "--num_processes", str(nproc)]
    elif nproc > 1:
        command += ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone"]
    proc = subprocess.run(
        [*command, str(EVALUATE), *map(str, args)],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, proc.stderr


def last_eval(run_dir: Path) -> dict:
    return [r for r in records(run_dir) if "eval_top1" in r][-1]


def test_evaluate_equals_the_loops_last_eval_record(vit_run, tmp_path):
    result = json.loads(evaluate(vit_run, "--json", tmp_path / "eval.json")[0])  # a real process
    record = last_eval(vit_run)
    assert record["step"] == 16  # the eval after the last step: the weights in model.safetensors
    assert {k: result[k] for k in ("eval_loss", "eval_top1", "eval_top5")} == {
        k: record[k] for k in ("eval_loss", "eval_top1", "eval_top5")
    }  # exactly: the same set-up, weights, batches and kernels
    assert result["samples"] == 16 and result["split"] == "validation" and result["processes"] == 1
    assert json.loads((tmp_path / "eval.json").read_text()) == result


def test_evaluate_ema_equals_the_loops_ema_record(vit_run, capfd):
    result = json.loads(evaluate(vit_run, "--ema", capfd=capfd)[0])
    record = last_eval(vit_run)
    assert [result[k] for k in ("eval_loss", "eval_top1", "eval_top5")] == [
        record[k] for k in ("ema_eval_loss", "ema_eval_top1", "ema_eval_top5")
    ]
    assert result["weights"].endswith("model_ema.safetensors")


def test_a_recipe_with_weights_on_two_processes_counts_every_sample_once(vit_run):
    result = json.loads(
        evaluate(vit_run / "recipe.toml", "--weights", vit_run / "model.safetensors", nproc=2)[0]
    )
    record = last_eval(vit_run)
    assert result["processes"] == 2 and result["samples"] == 16
    assert result["eval_top1"] == record["eval_top1"] and result["eval_top5"] == record["eval_top5"]
    assert result["eval_loss"] == pytest.approx(record["eval_loss"], rel=1e-6)  # other batch shapes


def test_the_readme_launcher_evaluates_a_run_dir_on_two_processes_with_the_one_process_top1(vit_run, capfd):
    """README's `python scripts/launch.py --num_processes 2 scripts/evaluate.py RUN_DIR`: two gloo processes
    on the CPU, each a shard, every sample once, the numbers of one process."""
    one = json.loads(evaluate(vit_run, capfd=capfd)[0])
    two = json.loads(evaluate(vit_run, nproc=2, launcher="launch.py")[0])
    assert (one["processes"], two["processes"]) == (1, 2) and one["samples"] == two["samples"] == 16
    assert (two["eval_top1"], two["eval_top5"]) == (one["eval_top1"], one["eval_top5"])
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-6)  # other batch shapes


def test_help_says_it_takes_a_run_dir_or_a_recipe(capfd):
    code, out, _ = call_main("evaluate.py", ["--help"], capfd)
    assert code == 0
    assert "usage: evaluate.py (RUN_DIR | RECIPE) " in out and "  RUN_DIR | RECIPE  " in out
    assert "path to a TOML recipe" not in out  # recipe_parser's help for a RECIPE alone


@pytest.mark.parametrize(
    "case", ["no_weights", "weights_of_another_model", "recipe_without_weights", "no_eval"]
)
def test_bad_input_is_one_line_exit_2(vit_run, tmp_path, case, capfd):
    shutil.copy(vit_run / "recipe.toml", tmp_path / "recipe.toml")
    args: list = [tmp_path]
    if case == "weights_of_another_model":
        import timm

        save_file(
            timm.create_model("test_resnet", num_classes=4).state_dict(), tmp_path / "resnet.safetensors"
        )
        args = [vit_run, "--weights", tmp_path / "resnet.safetensors"]
    elif case == "recipe_without_weights":
        args = [tmp_path / "recipe.toml"]
    elif case == "no_eval":
        args = [vit_run, "--set", 'data.eval_split="none"']
    real = case == "no_weights"  # one case as a real process: its exit code and stderr as a user sees them
    stdout, stderr = evaluate(*args, expect=2, capfd=None if real else capfd)
    assert stderr.count("\n") == 1 and stdout == "", stderr
    expected = {
        "no_weights": "weights: the run directory has no model.safetensors",
        "weights_of_another_model": "does not fit test_vit: missing keys [",
        "recipe_without_weights": "model: has no weights to evaluate",
        "no_eval": "data.eval_split: is 'none'",
    }[case]
    assert expected in stderr
