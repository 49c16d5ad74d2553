"""scripts/plot_schedule.py as a user runs it: PNG + JSON of a recipe's schedule; one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from trainer.recipe.load import load_recipe
from trainer.run.build import build_static
from trainer.schedule import build_schedule
from trainer.schedule.plot import plot, write_json

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "scripts" / "plot_schedule.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SEED_RECIPE = """
[model]
name = "test_vit"
num_classes = 10

[data]
path = "data/digits"
batch_size = 16

[train]
epochs = 12
accumulate = 2

[optimizer]
type = "SGD"
lr = 0.1
momentum = 0.9

[paramwise.rules]
"head.*" = { lr_mult = 10.0 }

[[schedule]]
type = "LinearLR"
start_factor = 0.001
by_epoch = false
end = 50

[[schedule]]
type = "MultiStepLR"
by_epoch = true
milestones = [8, 11]
gamma = 0.1

[[schedule]]
type = "LinearMomentum"
start_factor = 0.9
by_epoch = false
end = 300
"""


def run_tool(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(TOOL), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "seed.toml"
    path.write_text(textwrap.dedent(SEED_RECIPE))
    return path


def test_tool_writes_png_and_json_equal_to_the_schedule_the_loop_builds(recipe, tmp_path):
    png, out = tmp_path / "s.png", tmp_path / "s.json"
    proc = run_tool(str(recipe), "--steps-per-epoch", "100", "--out", str(png), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == PNG_MAGIC
    data = json.loads(out.read_text())
    assert data["steps_per_epoch"] == 100 and data["total_steps"] == 1200
    schedule = build_static(load_recipe(recipe).cfg, 100).schedule
    assert len(data["lr"]) == len(data["momentum"]) == len(schedule.group_names) == 2
    for g in range(2):
        assert data["lr"][g] == schedule.curve("lr", [g])[0].tolist()
        assert data["momentum"][g] == schedule.curve("momentum", [g])[0].tolist()
    assert data["lr"][0][0] == pytest.approx(1e-4) and data["lr"][0][800] == pytest.approx(0.01)
    assert data["lr"][1][49] == pytest.approx(1.0)  # the head's lr_mult 10 is kept


def tool_main():
    """The script's main(), imported in-process (a subprocess per case would re-import torch and timm)."""
    spec = importlib.util.spec_from_file_location("plot_schedule_script", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_dataset_size_derives_steps_per_epoch_from_batch_accumulate_and_processes(recipe, tmp_path, capsys):
    out = tmp_path / "s.json"
    code = tool_main()(
        [
            str(recipe),
            "--dataset-size",
            "1000",
            "--num-processes",
            "2",
            "--json",
            str(out),
            "--set",
            "schedule[0].end=20",
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["steps_per_epoch"] == 15  # whole global batches of 16 x 2 processes x 2 accumulate
    assert data["total_steps"] == 15 * 12
    assert "15 steps/epoch" in capsys.readouterr().out


def test_bad_schedule_is_one_line_on_stderr_with_exit_code_2(recipe, capsys):
    with pytest.raises(SystemExit) as info:
        tool_main()([str(recipe), "--steps-per-epoch", "10", "--set", "schedule[1].milestones=[8, 13]"])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recipe error: --set: schedule[1].milestones")


@pytest.mark.parametrize(
    "args", [[], ["--steps-per-epoch", "0"], ["--steps-per-epoch", "5", "--num-processes", "2"]]
)
def test_bad_length_arguments_are_usage_errors(recipe, capsys, args):
    with pytest.raises(SystemExit) as info:
        tool_main()([str(recipe), *args])
    assert info.value.code == 2 and "error:" in capsys.readouterr().err


def test_json_momentum_is_empty_when_not_scheduled_and_many_groups_plot(tmp_path):
    groups = [{"lr": 1e-3 * 0.8**i, "betas": (0.9, 0.999), "name": f"layer_{i}"} for i in range(20)]
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], **g} for g in groups])
    schedule = build_schedule(
        [{"type": "CosineAnnealingLR", "by_epoch": False}],
        param_groups=opt.param_groups,
        steps_per_epoch=50,
        train_cfg={"epochs": 4},
    )
    write_json(schedule, tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["momentum"] == [] and len(data["lr"]) == 20
    assert data["group_names"][3] == "layer_3"
    plot(schedule, tmp_path / "s.png", title="twenty groups")
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG_MAGIC
