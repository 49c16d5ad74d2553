"""The run directory as a timm model folder (config.json, model card) and scripts/push_to_hub.py, offline.

One short run of the quickstart recipe itself (resnet10t on data/digits, 2 epochs of the 359-image split)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image

from runs import ROOT, call_main, records, run, train_env
from trainer.model import build_model, load_exact
from trainer.outputs.export import describe_data, model_from_recipe, read_recipe, write_model_folder

PUSH = ROOT / "scripts" / "push_to_hub.py"
DIGITS = ROOT / "data" / "digits"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart recipe, trained for 2 short epochs (10 steps) on the digits' validation split."""
    out = tmp_path_factory.mktemp("export") / "quickstart"
    run(
        ROOT / "recipes" / "quickstart.toml",
        "--set",
        f'output_dir="{out}"',
        f'data.path="{DIGITS}"',
        'data.train_split="validation"',
        "train.epochs=2",
        "train.log_every=2",
        "checkpoint.interval=2",
    )
    return out


def push(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PUSH), *map(str, args)],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def trained_model(run_dir: Path) -> torch.nn.Module:
    """The run's model as the recipe builds it, with the run's final weights loaded as they are."""
    model = build_model(read_recipe(run_dir)["model"])
    load_exact(model, run_dir / "model.safetensors")
    return model.eval()


def test_config_json_is_timms_format_with_the_runs_pipeline_and_label_names(quickstart):
    config = json.loads((quickstart / "config.json").read_text())
    assert config["architecture"] == "resnet10t" and config["num_classes"] == 10
    assert config["label_names"] == [str(d) for d in range(10)]  # the digits' ClassLabel names
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 32, 32]  # data.image_size = 32 (resnet10t's own is 176)
    assert (cfg["interpolation"], cfg["crop_pct"], cfg["crop_mode"]) == ("bicubic", 0.875, "center")
    assert "tag" not in cfg and "license" not in cfg  # timm's registry weights are not these


def test_timm_loads_the_run_dir_with_the_trained_logits_and_eval_pipeline(quickstart):
    from trainer.data.transforms import resolve_input_config

    loaded = timm.create_model(f"local-dir:{quickstart}", pretrained=True).eval()
    trained = trained_model(quickstart)
    data_cfg = read_recipe(quickstart)["data"]
    ran = resolve_input_config(trained, data_cfg["image_size"], data_cfg["augment"])  # what the run used
    resolved = timm.data.resolve_data_config(model=loaded)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in resolved.items()} == {
        k: ran[k] for k in resolved
    }
    transform = timm.data.create_transform(**resolved)
    pixels = transform(_first_digit().convert("RGB"))
    batch = torch.stack([pixels, pixels.flip(-1)])
    with torch.no_grad():
        assert torch.equal(loaded(batch), trained(batch))
    assert loaded.pretrained_cfg["label_names"][3] == "3"


def _first_digit() -> Image.Image:
    import datasets

    return datasets.load_dataset("parquet", data_dir=str(DIGITS), split="validation")[0]["image"]


def test_model_card_has_recipe_data_final_metrics_and_command(quickstart):
    card = (quickstart / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: timm\n")
    last_eval = [r for r in records(quickstart) if "eval_top1" in r][-1]
    assert f"| model | {last_eval['eval_loss']:.4f} | {last_eval['eval_top1']:.2f} % |" in card
    assert "eval split `validation` (359 images)" in card and "resnet10t" in card
    assert "scripts/train.py" in card and "recipes/quickstart.toml" in card and "train.epochs=2" in card
    assert (quickstart / "recipe.toml").read_text().rstrip() in card
    assert f'timm.create_model("local-dir:{quickstart}", pretrained=True)' in card


def test_export_from_the_recipe_alone_writes_the_same_config(quickstart, tmp_path):
    """A run from before config.json existed gets the same one from its recipe.toml (no weights needed)."""
    for name in ("recipe.toml", "metrics.jsonl"):
        shutil.copy(quickstart / name, tmp_path / name)
    write_model_folder(model_from_recipe(read_recipe(tmp_path)), tmp_path)
    assert (tmp_path / "config.json").read_text() == (quickstart / "config.json").read_text()


def test_labels_that_are_not_a_class_label_give_no_label_names(make_tiny_dataset):
    path = make_tiny_dataset("parquet", class_label=False)
    assert describe_data({"path": path, "batch_size": 8}).label_names is None
    named = describe_data({"path": make_tiny_dataset("parquet"), "batch_size": 8})
    assert named.label_names == ["north_west", "north_east", "south_west", "south_east"]
    assert named.sizes == {"train": 48, "eval": 16}


def test_push_dry_run_lists_the_upload_and_the_card_names_the_hub_repo(quickstart):
    from trainer.outputs.hub import plan_upload

    proc = push(quickstart, "someone/quickstart", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert listed == [
        "config.json",
        "README.md",
        "model.safetensors",
        "recipe.toml",
        "metrics.jsonl",
        "run_info.json",
    ]
    uploads, notes = plan_upload(quickstart, "someone/quickstart")
    card = next(u.content for u in uploads if u.name == "README.md").decode()
    assert 'timm.create_model("hf-hub:someone/quickstart", pretrained=True)' in card and not notes


def test_push_offline_is_one_line_and_exit_1(quickstart):
    proc = push(quickstart, "someone/quickstart")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("push error: ") and "offline" in proc.stderr


@pytest.mark.parametrize("case", ["no_weights", "not_a_run", "bad_repo_id", "weights_of_another_model"])
def test_push_bad_input_is_one_line_exit_2(quickstart, tmp_path, case, capfd):
    repo = "someone/x"
    if case in ("no_weights", "weights_of_another_model"):
        for name in ("recipe.toml", "config.json", "README.md"):
            shutil.copy(quickstart / name, tmp_path / name)
    if case == "weights_of_another_model":
        from safetensors.torch import save_file

        save_file(
            timm.create_model("test_resnet", num_classes=10).state_dict(), tmp_path / "model.safetensors"
        )
    if case == "bad_repo_id":
        repo = "not a repo id"
    args = [quickstart if case == "bad_repo_id" else tmp_path, repo, "--dry-run"]
    if case == "not_a_run":  # one case as a real process: its exit code and stderr as a user sees them
        proc = push(*args)
        code, stderr = proc.returncode, proc.stderr
    else:
        code, _, stderr = call_main("push_to_hub.py", args, capfd)
    assert code == 2 and stderr.count("\n") == 1, stderr
    expected = {
        "no_weights": "has no model.safetensors",
        "not_a_run": "has no recipe.toml",
        "bad_repo_id": "REPO_ID",
        "weights_of_another_model": "does not fit config.json's model",
    }[case]
    assert expected in stderr


def test_a_readme_that_is_not_our_card_is_never_overwritten(quickstart, tmp_path):
    """output_dir = "." in a project must not replace the project's README."""
    from trainer.errors import RecipeError

    shutil.copy(quickstart / "recipe.toml", tmp_path / "recipe.toml")
    (tmp_path / "README.md").write_text("# my project\n")
    with pytest.raises(RecipeError, match="not a model card of ours"):
        write_model_folder(model_from_recipe(read_recipe(tmp_path)), tmp_path)
    assert (tmp_path / "README.md").read_text() == "# my project\n" and (tmp_path / "config.json").is_file()
