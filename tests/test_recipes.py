"""Every shipped recipe (recipes/**/*.toml, bases excluded) dry-runs without touching data, and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.build import build_static
from trainer.recipe import load_recipe
from trainer.schedule.plot import plot, write_json
from trainer.summary import dry_run

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.toml") if "_base" not in p.parts)


def test_the_library_ships_the_recipes_readme_promises():
    names = {p.name for p in RECIPES}
    assert {
        "quickstart.toml",
        "vit_adamw.toml",
        "resnet50_imagenet_bs256.toml",
        "swin_tiny_imagenet_bs1024_adamw.toml",
        "cifar10_resnet18_bs128.toml",
        "vit_base_finetune_layer_decay.toml",
    } <= names


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_dry_runs_and_its_schedule_renders(path, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(path.relative_to(ROOT), ["data.path=/nonexistent/data/is/not/read"])
    summary = dry_run(recipe)
    assert "recipe is valid" in summary
    schedule = build_static(recipe.cfg, steps_per_epoch=7).schedule
    plot(schedule, tmp_path / "lr.png", title=path.name)
    write_json(schedule, tmp_path / "lr.json")
    assert (tmp_path / "lr.png").stat().st_size > 10_000
    curves = json.loads((tmp_path / "lr.json").read_text())
    assert curves["total_steps"] == len(curves["lr"][0])


def test_imagenet_recipes_take_their_data_path_from_one_key(monkeypatch):
    monkeypatch.chdir(ROOT)
    recipe = load_recipe("recipes/vit_adamw.toml", ["data.path=/data/imagenet"])
    assert recipe.cfg["data"]["path"] == "/data/imagenet"


def test_swin_recipe_matches_mmpretrain_imagenet_bs1024_adamw_swin(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_recipe("recipes/swin_tiny_imagenet_bs1024_adamw.toml").cfg
    assert cfg["optimizer"] == {
        "type": "AdamW",
        "lr": 1e-3,
        "weight_decay": 0.05,
        "eps": 1e-8,
        "betas": [0.9, 0.999],
    }
    assert cfg["paramwise"]["norm_decay_mult"] == 0.0 and cfg["paramwise"]["bias_decay_mult"] == 0.0
    assert [e["type"] for e in cfg["schedule"]] == ["LinearLR", "CosineAnnealingLR"]
    assert cfg["schedule"][0]["end"] == 20 and cfg["schedule"][0]["convert_to_iter_based"] is True
    assert cfg["train"]["epochs"] == 300 and cfg["clip_grad"]["max_norm"] == 5.0
