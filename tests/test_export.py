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
from huggingface_hub import ModelCard
from PIL import Image

from runs import ROOT, call_main, records, run, train_env
from trainer.model import build_model, load_exact
from trainer.outputs.export import (
    DataSummary,
    base_weights,
    describe_data,
    model_card,
    model_from_recipe,
    read_recipe,
    write_model_folder,
)

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


def test_model_card_has_data_final_metrics_usage_command_and_recipe(quickstart):
    card = (quickstart / "README.md").read_text()
    last_eval = [r for r in records(quickstart) if "eval_top1" in r][-1]
    assert f"| model | {last_eval['eval_loss']:.4f} | {last_eval['eval_top1']:.2f} % |" in card
    assert "on local parquet files (359 validation / 359 validation images)" in card  # train on validation
    assert "eval split `validation` (359 images)" in card and "resnet10t" in card
    assert (
        "python scripts/train.py " in card and "quickstart.toml --set " in card and "train.epochs=2" in card
    )
    assert "--set output_dir=PATH/TO/RUN data.path=PATH/TO/DATA" in card
    assert '\noutput_dir = "PATH/TO/RUN"\n' in card and '\npath = "PATH/TO/DATA"\n' in card  # the recipe
    assert 'timm.create_model("local-dir:PATH/TO/RUN", pretrained=True)' in card
    assert "- **License:** not set" in card  # random initial weights: the license is the user's to state


def test_model_card_metadata_parses_with_huggingface_hub_and_holds_the_final_eval_as_model_index(quickstart):
    from huggingface_hub import metadata_load

    metadata = metadata_load(quickstart / "README.md")
    assert (metadata["library_name"], metadata["pipeline_tag"]) == ("timm", "image-classification")
    assert "license" not in metadata and "base_model" not in metadata  # random start: neither is known
    assert "datasets" not in metadata  # local data: only a Hub dataset is listed
    last_eval = [r for r in records(quickstart) if "eval_top1" in r][-1]
    card = ModelCard.load(quickstart / "README.md")
    assert card.data.model_name == "quickstart"
    results = {r.metric_name: r for r in card.data.eval_results}
    assert results["Top 1 Accuracy"].metric_value == last_eval["eval_top1"]  # exactly metrics.jsonl's
    assert results["Top 5 Accuracy"].metric_value == last_eval["eval_top5"]
    top1 = results["Top 1 Accuracy"]
    assert (top1.task_type, top1.metric_type) == ("image-classification", "accuracy")
    assert (top1.dataset_type, top1.dataset_name, top1.dataset_split) == (
        "parquet",
        "local parquet files",
        "validation",
    )


def test_model_card_body_names_no_local_path_of_the_run_or_its_data(quickstart):
    card = (quickstart / "README.md").read_text()
    data_path = read_recipe(quickstart)["data"]["path"]
    assert data_path == str(DIGITS)
    for local in (str(quickstart), str(quickstart.resolve()), data_path, "data/digits", str(ROOT)):
        assert local not in card, local


@pytest.mark.parametrize(
    ("model_cfg", "hub_id", "license"),
    [
        ({"name": "resnet50.a1_in1k", "pretrained": True}, "timm/resnet50.a1_in1k", "apache-2.0"),
        ({"name": "resnet50", "pretrained": True}, "timm/resnet50.a1_in1k", "apache-2.0"),  # timm's default
        (
            {"name": "resnet50.fb_ssl_yfcc100m_ft_in1k", "pretrained": True},
            "timm/resnet50.fb_ssl_yfcc100m_ft_in1k",
            "cc-by-nc-4.0",
        ),
        ({"name": "hf-hub:someone/digits-resnet"}, "someone/digits-resnet", None),
        ({"name": "hf-hub:someone/digits-resnet@v2", "num_classes": 4}, "someone/digits-resnet", None),
        ({"name": "hf-hub:someone/digits-resnet", "pretrained": False}, None, None),
        ({"name": "local-dir:/home/me/runs/quickstart"}, None, None),
        ({"name": "resnet50", "pretrained": True, "weights": "/home/me/w.safetensors"}, None, None),
        ({"name": "resnet50"}, None, None),
    ],
)
def test_base_model_is_the_hub_id_of_pretrained_or_hub_weights_and_never_a_local_file(
    model_cfg, hub_id, license
):
    base = base_weights(model_cfg)
    assert (base.hub_id, base.license) == (hub_id, license)
    assert "/home/me" not in base.text


def card_for(quickstart: Path, **changes: dict) -> str:
    """The quickstart's card as model_card writes it for its recipe with `changes` to its tables."""
    cfg = read_recipe(quickstart)
    for table, values in changes.items():
        cfg[table] = {**cfg.get(table, {}), **values}
    data = describe_data(cfg["data"])
    return model_card(quickstart, cfg, model_from_recipe(cfg), data)


def test_a_pretrained_start_names_its_timm_hub_id_as_base_model_and_inherits_its_license(
    quickstart, tmp_path
):
    from trainer.outputs.hub import hub_card

    text = card_for(quickstart, model={"pretrained": True})  # written from the recipe: nothing downloaded
    card = ModelCard(text)
    assert (card.data.base_model, card.data.license) == ("timm/resnet10t.c3_in1k", "apache-2.0")
    assert "`apache-2.0` (the initial weights' license, from timm's registry)" in card.text
    (tmp_path / "README.md").write_text(text)
    pushed, notes = hub_card(tmp_path, "someone/digits", None)  # the inherited license goes up as it is
    assert ModelCard(pushed).data.license == "apache-2.0" and notes == [
        "license: apache-2.0 (from README.md; --license ID sets another)"
    ]


def test_only_a_hub_dataset_is_listed_in_the_metadata_and_named_in_the_body(quickstart):
    cfg = read_recipe(quickstart)
    hub = DataSummary(sizes={"train": 50000, "eval": 10000}, hub_name="uoft-cs/cifar10", format="hub")
    cfg["data"] = {**cfg["data"], "path": "uoft-cs/cifar10", "train_split": "train", "eval_split": "test"}
    card = ModelCard(model_card(quickstart, cfg, model_from_recipe(cfg), hub))
    assert card.data.datasets == ["uoft-cs/cifar10"]
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.dataset_name) == ("uoft-cs/cifar10", "uoft-cs/cifar10")
    assert result.dataset_split == "test"
    link = "[`uoft-cs/cifar10`](https://huggingface.co/datasets/uoft-cs/cifar10)"
    assert f"on the Hub dataset {link} (50,000 train / 10,000 test images)" in card.text
    assert '\npath = "uoft-cs/cifar10"\n' in card.text  # a Hub name is no local path: the recipe keeps it


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

    proc = push(quickstart, "someone/quickstart", "--dry-run", "--license", "mit")
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
    uploads, notes = plan_upload(quickstart, "someone/digits", license="mit")
    card = next(u.content for u in uploads if u.name == "README.md").decode()
    assert 'timm.create_model("hf-hub:someone/digits", pretrained=True)' in card and not notes
    assert (
        "local-dir:" not in card and "- **License:** `mit` (set by scripts/push_to_hub.py --license)" in card
    )
    metadata = ModelCard(card).data
    assert (metadata.license, metadata.model_name) == ("mit", "digits")  # model-index names the repository
    local = ModelCard.load(quickstart / "README.md").data
    assert metadata.eval_results == local.eval_results and metadata.library_name == "timm"


def test_the_pushed_card_names_the_hub_file_of_the_ema_weights(quickstart, tmp_path):
    from trainer.outputs.hub import hub_card

    (tmp_path / "README.md").write_text(card_for(quickstart, ema={"enabled": True, "decay": 0.9}))
    assert '.load_file("PATH/TO/RUN/model_ema.safetensors")' in (tmp_path / "README.md").read_text()
    pushed, _ = hub_card(tmp_path, "someone/digits", "mit")
    assert '.load_file(huggingface_hub.hf_hub_download("someone/digits", "model_ema.safetensors"))' in pushed


def test_push_rewrites_an_older_card_that_named_local_paths(quickstart, tmp_path):
    from trainer.outputs.export import CARD_MARK
    from trainer.outputs.hub import plan_upload

    for name in ("recipe.toml", "metrics.jsonl", "config.json", "model.safetensors"):
        shutil.copy(quickstart / name, tmp_path / name)
    older = f'---\nlibrary_name: timm\n---\n{CARD_MARK}\n\ntimm.create_model("local-dir:{tmp_path}")\n'
    (tmp_path / "README.md").write_text(older)
    uploads, notes = plan_upload(tmp_path, "someone/digits", license="mit")
    assert notes == [f"rewrote README.md in {tmp_path} (an older trainer's card, which named local paths)"]
    card = next(u.content for u in uploads if u.name == "README.md").decode()
    assert str(tmp_path) not in card and 'timm.create_model("hf-hub:someone/digits"' in card


def test_push_offline_is_one_line_and_exit_1(quickstart):
    proc = push(quickstart, "someone/quickstart", "--license", "mit")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("push error: ") and "offline" in proc.stderr


@pytest.mark.parametrize(
    "case",
    ["no_weights", "not_a_run", "bad_repo_id", "weights_of_another_model", "no_license", "bad_license"],
)
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
    run_dir = quickstart if case in ("bad_repo_id", "no_license", "bad_license") else tmp_path
    license = {"no_license": [], "bad_license": ["--license", "Apache 2.0"]}.get(case, ["--license", "mit"])
    args = [run_dir, repo, "--dry-run", *license]
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
        "no_license": "command line: --license: README.md states no license: pass the one",
        "bad_license": "--license: 'Apache 2.0' is not a Hub license identifier (e.g. apache-2.0, mit,",
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
