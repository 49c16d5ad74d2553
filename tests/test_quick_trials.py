"""Quick trials from the command line: `--set train.epochs=1` or `--set train.max_steps=5` on any shipped
recipe trains (the one replaces the other; schedule windows past the new end are dropped or cut with one
warning line each, as MMEngine never applies them), while a recipe file that does the same is still refused
unless it sets train.schedule_past_end = "warn"."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs import ROOT, call_main, make_dataset, records
from trainer.errors import RecipeError
from trainer.recipe.load import load_recipe
from trainer.run.build import build_static

RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.toml") if "_base" not in p.parts)
TRIALS = ["train.epochs=1", "train.max_steps=5"]


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "colours", n_train=64, n_eval=16, size=32)


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory) -> Path:
    """Initial weights for the fine-tuning recipe's `model.weights` (a test_vit as its variant builds it)."""
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("test_vit", num_classes=4, img_size=32, global_pool="avg")
    path = tmp_path_factory.mktemp("weights") / "vit.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def tiny_variant(recipe: Path, colours: Path, weights: Path) -> list[str]:
    """--set overrides that make a shipped recipe quickstart-sized: a timm test model of its family, 64 small
    images, batch 16; everything else (optimizer, paramwise, schedule, augmentation, mixup) as shipped."""
    name = recipe.stem
    if "swin" in name:
        model = ["model.embed_dim=16", "model.depths=[1,1]", "model.num_heads=[1,1]", "model.window_size=4"]
        model.append("model.img_size=32")
    elif "vit" in name:
        model = ["model.name=test_vit", "model.img_size=32"]
        model += [f"model.weights={weights}"] if "finetune" in name else []
    else:
        model = ["model.name=test_convnext" if "convnext" in name else "model.name=test_resnet"]
    data = [f"data.path={colours}", "data.image_column=image", "data.label_column=label"]
    data += ["data.eval_split=validation", "data.batch_size=16", "data.image_size=32", "data.num_workers=0"]
    return [*model, "model.num_classes=4", *data]


@pytest.mark.parametrize("trial", TRIALS)
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_a_quick_trial_of_every_shipped_recipe_trains_to_its_new_end(
    recipe, trial, colours, vit_weights, tmp_path, capfd
):
    out = tmp_path / "run"
    overrides = [trial, *tiny_variant(recipe, colours, vit_weights), f"output_dir={out}"]
    code, stdout, stderr = call_main("train.py", [recipe, "--set", *overrides], capfd)
    assert code == 0, stdout[-2000:] + stderr[-2000:]
    steps = [r["step"] for r in records(out) if "loss" in r]
    assert steps[-1] == (4 if trial == "train.epochs=1" else 5)  # 64 images / 16 per step = 4 per epoch
    assert (out / "model.safetensors").is_file()
    assert all(line.startswith("schedule warning: ") for line in stderr.splitlines() if "schedule" in line)


@pytest.mark.parametrize("trial", TRIALS)
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_a_quick_trial_builds_the_schedule_at_any_epoch_length(recipe, trial, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_recipe(recipe.relative_to(ROOT), [trial, "data.path=/not/read"]).cfg
    other = "max_steps" if trial.startswith("train.epochs") else "epochs"
    assert other not in cfg["train"] and cfg["train"]["schedule_past_end"] == "warn"
    for steps_per_epoch in (1, 7, 400):
        schedule = build_static(cfg, steps_per_epoch=steps_per_epoch).schedule
        assert schedule.total_steps == (steps_per_epoch if other == "max_steps" else 5)


def test_windows_past_the_end_are_warned_once_each_in_one_line(monkeypatch, capfd):
    monkeypatch.chdir(ROOT)
    capfd.readouterr()
    cfg = load_recipe("recipes/vit_adamw.toml", ["train.epochs=1", "data.path=/not/read"]).cfg
    build_static(cfg, steps_per_epoch=10)
    lines = capfd.readouterr().err.splitlines()
    assert lines == [
        "schedule warning: schedule[0] (LinearLR) ends at epoch 20 and training ends at epoch 1"
        " (train.epochs): cut there, its curve as written (as MMEngine)",
        "schedule warning: schedule[1] (CosineAnnealingLR) begins at epoch 20 and training ends at epoch 1"
        " (train.epochs): dropped, as MMEngine never applies it",
    ]


def test_a_recipe_file_with_a_window_past_its_end_is_refused_unless_it_says_warn(tmp_path):
    base = (ROOT / "recipes" / "quickstart.toml").read_text().replace("epochs = 10", "epochs = 1")
    assert "epochs = 1\n" in base
    path = tmp_path / "short.toml"
    path.write_text(base.replace('path = "data/digits"', f'path = "{ROOT / "data" / "digits"}"'))
    with pytest.raises(RecipeError) as refused:
        build_static(load_recipe(path).cfg)
    assert refused.value.key == "schedule[1].begin"
    assert 'train.schedule_past_end = "warn"' in str(refused.value)
    path.write_text(path.read_text().replace("[train]\n", '[train]\nschedule_past_end = "warn"\n'))
    assert build_static(load_recipe(path).cfg, steps_per_epoch=22).schedule.total_steps == 22


def test_max_steps_on_the_command_line_replaces_the_recipes_epochs_and_both_there_is_one_line(capfd):
    cfg = load_recipe(ROOT / "recipes" / "quickstart.toml", ["train.max_steps=20"]).cfg
    assert cfg["train"]["max_steps"] == 20 and "epochs" not in cfg["train"]
    code, _, err = call_main(
        "train.py", [ROOT / "recipes/quickstart.toml", "--set", "train.max_steps=20", "train.epochs=1"], capfd
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--set" in err and "train.epochs" in err and "train.max_steps" in err
