"""scripts/port_mmpretrain.py as a user runs it: what each part of a config becomes, the header and warnings,
--strict, --model/--data/--scale-lr-to, bad input as one line with exit 2, and recipes that dry-run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("mmengine", minversion="0.10.7")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "mmpretrain"
CORPUS = FIXTURES / "corpus"
CONFIGS = FIXTURES / "configs"
DEIT = CONFIGS / "deit" / "deit-small_4xb256_in1k.py"
RESNET50 = CONFIGS / "resnet" / "resnet50_8xb32_in1k.py"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PORT = load_script("port_mmpretrain")
TRAIN = load_script("train")


def run(capsys, *args: str) -> tuple[int, str, str]:
    """The tool in-process: (exit code, stdout, stderr)."""
    try:
        code = PORT.main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def ported(tmp_path: Path, capsys, config: Path, *args: str) -> tuple[dict, str, str]:
    out = tmp_path / "recipe.toml"
    code, _, err = run(capsys, config, "-o", out, *args)
    assert code == 0, err
    text = out.read_text()
    return tomllib.loads(text), text, err


CORPUS_PORTS = [
    *sorted(
        p for p in CORPUS.glob("*.py") if p.stem not in ("not_a_config", "missing_base", "no_timm_backbone")
    ),
    CORPUS / "pure_python" / "resnet18.py",
    DEIT,
    RESNET50,
    CONFIGS / "convnext" / "convnext-tiny_32xb128_in1k.py",
    CONFIGS / "swin_transformer" / "swin-tiny_16xb64_in1k.py",
]


@pytest.mark.parametrize("config", CORPUS_PORTS, ids=[p.stem for p in CORPUS_PORTS])
def test_written_recipe_dry_runs_as_it_is(tmp_path, capsys, config):
    _, text, err = ported(tmp_path, capsys, config)
    assert TRAIN.main([str(tmp_path / "recipe.toml"), "--dry-run"]) == 0
    assert "dry run: recipe is valid" in capsys.readouterr().out
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    header = text.split("\n[", 1)[0]
    for line in warnings:  # every warning is in the header, and the header lists no other unmapped item
        key = line.split(": ", 2)[2].split(": ", 1)[0]
        assert f"#   {key}: " in header
    assert f"Not mapped ({len(warnings)};" in header or (not warnings and "Not mapped: nothing" in header)


def test_resnet50_ports_cleanly_and_strict_accepts_it(tmp_path, capsys):
    recipe, text, err = ported(tmp_path, capsys, RESNET50, "--strict")
    assert "warning" not in err and "# Not mapped: nothing" in text
    assert recipe["model"] == {"name": "resnet50", "num_classes": 1000}
    assert recipe["optimizer"] == {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0001}
    assert recipe["schedule"] == [
        {"type": "MultiStepLR", "by_epoch": True, "milestones": [30, 60, 90], "gamma": 0.1}
    ]
    assert recipe["train"] == {"epochs": 100, "precision": "no"}
    aug = recipe["data"]["augment"]
    assert (recipe["data"]["image_size"], aug["crop_pct"], aug["interpolation"]) == (224, 0.875, "bilinear")


def test_strict_turns_each_unmapped_item_into_an_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "recipe.toml"
    code, stdout, err = run(capsys, DEIT, "-o", out, "--strict")
    assert code == 2 and not out.exists() and not stdout
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"port error: {DEIT}: ") for line in lines)
    assert any("custom_keys['.absolute_pos_embed']" in line for line in lines)


def test_without_output_the_recipe_goes_to_stdout(capsys):
    code, out, err = run(capsys, RESNET50)
    assert code == 0 and not err
    assert tomllib.loads(out)["model"]["name"] == "resnet50"
    assert out.startswith(f"# Ported from MMPretrain {RESNET50}")


def test_corpus_keys_map_as_the_readme_table_says(tmp_path, capsys):
    swin, text, _ = ported(tmp_path, capsys, CORPUS / "swin_keys.py")
    assert swin["train"] == {"epochs": 6, "precision": "bf16", "accumulate": 2}
    assert swin["ema"] == {"momentum": 4e-5, "interval": 1, "begin": 0}
    assert swin["eval"] == {"enabled": False} and swin["data"]["eval_split"] == "none"
    assert swin["data"]["repeated_augmentation"] == 3 and swin["data"]["format"] == "imagefolder"
    assert swin["data"]["path"] == "data/flowers/train"
    assert swin["data"]["augment"]["color_jitter"] == 0.4 and swin["data"]["augment"]["scale"] == [0.25, 1.0]
    assert swin["data"]["augment"]["mean"] == [0.5, 0.5, 0.5]
    cosine = {"type": "CosineAnnealingLR", "T_max": 4, "eta_min_ratio": 0.01, "by_epoch": True}
    assert swin["schedule"][1] == {**cosine, "begin": 2, "end": 6}
    resnet, _, _ = ported(tmp_path, capsys, CORPUS / "resnet_v1d_keys.py")
    assert resnet["model"] == {"name": "resnet18d", "num_classes": 100}
    assert resnet["train"]["loss"] == "bce" and resnet["clip_grad"] == {"type": "value", "clip_value": 1.0}
    assert resnet["data"]["path"] == "uoft-cs/cifar100" and resnet["data"]["label_column"] == "fine_label"
    assert resnet["eval"] == {"interval": 2} and resnet["data"]["eval_batch_size"] == 256
    vit, _, _ = ported(tmp_path, capsys, CORPUS / "chain_vit_keys.py")
    assert vit["seed"] == 7 and vit["checkpoint"] == {"interval": 2, "max_keep": 2}
    assert vit["model"] == {"name": "deit_tiny_patch16_224", "num_classes": 10, "drop_path_rate": 0.05}
    assert vit["train"]["label_smoothing"] == 0.1
    assert vit["mixup"] == {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5}
    assert vit["schedule"][0]["end"] == 2 and vit["schedule"][1]["begin"] == 2  # {{_base_.warmup_epochs}}
    assert vit["optimizer"]["type"] == "AdamW" and "momentum" not in vit["optimizer"]  # _delete_=True
    it, _, _ = ported(tmp_path, capsys, CORPUS / "sched_iter.py")
    assert it["train"] == {"max_steps": 120, "precision": "no"} and it["eval"] == {"interval": 40}
    assert it["checkpoint"] == {"interval": 40, "max_keep": -1}
    decay, _, _ = ported(tmp_path, capsys, CORPUS / "layer_decay.py")
    assert decay["optimizer"]["constructor"] == {
        "type": "LayerDecay", "decay_rate": 0.65, "exclude_1d": False, "exclude_no_weight_decay": False,
    }  # fmt: skip
    assert decay["model"]["global_pool"] == "avg"
    convnext, _, _ = ported(tmp_path, capsys, CORPUS / "convnext_keys.py")
    assert convnext["schedule"][2]["type"] == "CosineAnnealingParamScheduler"
    assert convnext["schedule"][2]["param_name"] == "weight_decay"


def test_model_data_and_scale_lr_options(tmp_path, capsys):
    recipe, text, _ = ported(
        tmp_path, capsys, CORPUS / "chain_vit_keys.py", "--data", "/data/in1k", "--scale-lr-to", "512"
    )
    assert recipe["data"]["path"] == "/data/in1k"
    assert recipe["optimizer"]["lr"] == pytest.approx(2e-3)
    assert "optimizer.lr scaled by 512/256" in text
    recipe, text, err = ported(tmp_path, capsys, CORPUS / "no_timm_backbone.py", "--model", "resnet18")
    assert recipe["model"]["name"] == "resnet18"
    assert "'ResNet_CIFAR'" in text and "--model resnet18 is used" in text
    recipe, _, err = ported(
        tmp_path, capsys, CONFIGS / "_base_" / "schedules" / "cub_bs64.py", "--model", "resnet18"
    )
    assert recipe["model"] == {"name": "resnet18"} and recipe["train"]["epochs"] == 100
    assert "train_dataloader: none in the config" in err


BAD = {
    "missing file": (["nope.py"], "nope.py: config: no such file"),
    "not a config file": ([ROOT / "recipes" / "quickstart.toml"], "config: not an MMEngine config file"),
    "syntax error": (
        [CORPUS / "not_a_config.py"],
        "not_a_config.py: config: MMEngine cannot read it: SyntaxError",
    ),
    "missing base": ([CORPUS / "missing_base.py"], "missing_base.py: config: MMEngine cannot read it"),
    "no timm backbone": (
        [CORPUS / "no_timm_backbone.py"],
        "no_timm_backbone.py: model.backbone.type: backbone type 'ResNet_CIFAR' has no timm equivalent",
    ),
    "no model": ([CONFIGS / "_base_" / "schedules" / "cub_bs64.py"], "model: the config has no model"),
    "no optimizer": (
        [CONFIGS / "_base_" / "models" / "resnet50.py"],
        "optim_wrapper: the config has no optim_wrapper.optimizer",
    ),
    "unknown timm model": ([RESNET50, "--model", "resnet_51"], "model: the timm model does not build"),
    "bad scale": ([RESNET50, "--scale-lr-to", "0"], "--scale-lr-to: must be a positive integer"),
    "unwritable output": ([RESNET50, "-o", "/nonexistent/dir/r.toml"], "port error: /nonexistent/dir/r.toml"),
}


@pytest.mark.parametrize("case", BAD, ids=BAD)
def test_bad_input_is_one_line_exit_2(capsys, case):
    args, expected = BAD[case]
    code, out, err = run(capsys, *args)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert expected in err


def test_without_mmengine_the_tool_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mmengine.config", None)
    code, _, err = run(capsys, RESNET50)
    assert code == 2 and 'pip install -e ".[port]"' in err and len(err.strip().splitlines()) == 1


def test_command_line_exit_code_and_single_line():
    tool = [sys.executable, str(ROOT / "scripts" / "port_mmpretrain.py")]
    bad = subprocess.run([*tool, str(CORPUS / "no_timm_backbone.py")], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not bad.stdout
    assert bad.stderr.startswith("recipe error: ") and "Traceback" not in bad.stderr
