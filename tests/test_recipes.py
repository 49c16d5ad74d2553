"""Every shipped recipe (recipes/**/*.toml, bases excluded) dry-runs without touching data, and plots; the
MMPretrain ports hold their source configs' values (read from open-mmlab/mmpretrain's configs/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.recipe.load import load_recipe
from trainer.run.build import build_static
from trainer.run.summary import dry_run
from trainer.schedule.plot import plot, write_json

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.toml") if "_base" not in p.parts)


def test_the_library_ships_the_recipes_readme_promises():
    names = {p.name for p in RECIPES}
    assert {
        "quickstart.toml",
        "vit_adamw.toml",
        "resnet50_imagenet_bs256.toml",
        "swin_tiny_imagenet_bs1024_adamw.toml",
        "convnext_tiny.toml",
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


IMAGENET_BS64_SWIN_224 = {
    "scale": [0.08, 1.0],
    "ratio": [0.75, 1.3333333333333333],
    "hflip": 0.5,
    "vflip": 0.0,
    "color_jitter": 0.0,
    "interpolation": "bicubic",
    "crop_pct": 0.875,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "auto_augment": "rand-m9-n2-mstd0.5-inc1",
    "re_prob": 0.25,
    "re_mode": "pixel",
    "re_count": 1,
}
"""_base_/datasets/imagenet_bs64_swin_224.py: RandomResizedCrop 224 bicubic, flip 0.5, RandAugment
timm_increasing m9 mstd 0.5 (2 ops), RandomErasing 0.25 per-pixel noise; eval ResizeEdge 256 + CenterCrop 224
bicubic; the data_preprocessor's mean/std / 255."""

ADAMW_SWIN = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05, "eps": 1e-8, "betas": [0.9, 0.999]}
"""_base_/schedules/imagenet_bs1024_adamw_swin.py: lr 5e-4 * 1024 / 512."""

MIXUP_CUTMIX = {"enabled": True, "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5}
"""model.train_cfg.augments = [Mixup(alpha=0.8), CutMix(alpha=1.0)], no probs: one of them per batch."""


def load(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    return load_recipe(f"recipes/{name}.toml", ["data.path=/nonexistent/data/is/not/read"]).cfg


def assert_imagenet_bs1024_adamw_swin_schedule(cfg):
    assert {k: cfg["paramwise"][k] for k in ("norm_decay_mult", "bias_decay_mult", "flat_decay_mult")} == {
        "norm_decay_mult": 0.0,
        "bias_decay_mult": 0.0,
        "flat_decay_mult": 0.0,
    }
    assert cfg["schedule"] == [
        {
            "type": "LinearLR",
            "start_factor": 1e-3,
            "by_epoch": True,
            "end": 20,
            "convert_to_iter_based": True,
        },
        {"type": "CosineAnnealingLR", "eta_min": 1e-5, "by_epoch": True, "begin": 20},
    ]
    assert cfg["train"]["epochs"] == 300


def test_swin_recipe_matches_mmpretrain_swin_tiny_16xb64_in1k(monkeypatch):
    cfg = load("swin_tiny_imagenet_bs1024_adamw", monkeypatch)
    assert cfg["model"]["name"] == "swin_tiny_patch4_window7_224" and cfg["model"]["num_classes"] == 1000
    assert cfg["model"]["drop_path_rate"] == 0.2
    assert cfg["optimizer"] == ADAMW_SWIN
    assert_imagenet_bs1024_adamw_swin_schedule(cfg)
    assert cfg["paramwise"]["rules"] == {
        "*relative_position_bias_table*": {"decay_mult": 0.0, "freeze": False}
    }
    assert cfg["clip_grad"]["max_norm"] == 5.0
    assert cfg["train"]["label_smoothing"] == 0.1 and cfg["train"]["loss"] == "cross_entropy"
    assert {k: cfg["mixup"][k] for k in MIXUP_CUTMIX} == MIXUP_CUTMIX
    assert cfg["data"]["augment"] == IMAGENET_BS64_SWIN_224
    assert cfg["data"]["batch_size"] == 64  # 16xb64
    assert "ema" not in cfg


def test_vit_recipe_matches_mmpretrain_deit_small_4xb256_in1k(monkeypatch):
    cfg = load("vit_adamw", monkeypatch)
    # arch 'deit-small' (384 wide, 12 layers, 6 heads): timm's DeiT-S; the source sets no drop_path_rate
    # ("In small and tiny arch, remove drop path and EMA hook comparing with the original config"), so
    # VisionTransformer's default 0 holds, and there is no EMAHook.
    assert cfg["model"]["name"] == "deit_small_patch16_224" and cfg["model"]["num_classes"] == 1000
    assert cfg["model"]["drop_path_rate"] == 0.0
    assert "ema" not in cfg
    assert {k: cfg["mixup"][k] for k in MIXUP_CUTMIX} == MIXUP_CUTMIX
    assert cfg["mixup"]["mixup_alpha"] == 0.8 and cfg["mixup"]["cutmix_alpha"] == 1.0
    assert cfg["train"]["label_smoothing"] == 0.1 and cfg["train"]["loss"] == "cross_entropy"
    assert cfg["clip_grad"]["type"] == "norm" and cfg["clip_grad"]["max_norm"] == 5.0
    augment = cfg["data"]["augment"]
    assert augment["auto_augment"].startswith("rand-m9") and "mstd0.5" in augment["auto_augment"]
    assert augment["re_prob"] == 0.25
    assert augment == IMAGENET_BS64_SWIN_224
    assert cfg["data"]["batch_size"] == 256 and cfg["data"]["repeated_augmentation"] == 1  # 4xb256
    assert cfg["optimizer"] == ADAMW_SWIN  # 5e-4 * 1024 / 512 for the 4 x 256 batch
    assert cfg["paramwise"]["rules"] == {
        "cls_token": {"decay_mult": 0.0, "freeze": False},
        "pos_embed": {"decay_mult": 0.0, "freeze": False},
    }
    assert_imagenet_bs1024_adamw_swin_schedule(cfg)  # the DeiT-S config keeps the base's 20 warmup epochs


def test_convnext_recipe_matches_mmpretrain_convnext_tiny_32xb128_in1k(monkeypatch):
    cfg = load("convnext_tiny", monkeypatch)
    assert cfg["model"]["name"] == "convnext_tiny" and cfg["model"]["num_classes"] == 1000
    assert cfg["model"]["drop_path_rate"] == 0.1
    assert cfg["model"]["ls_init_value"] == 1e-6  # ConvNeXt's layer_scale_init_value default, kept
    # custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]: every step, from step 0
    assert cfg["ema"]["momentum"] == 1e-4 and cfg["ema"]["interval"] == 1 and cfg["ema"]["begin"] == 0
    assert cfg["ema"]["enabled"] is True and "decay" not in cfg["ema"]
    assert cfg["optimizer"] == {**ADAMW_SWIN, "lr": 4e-3}  # the config's lr for 32 x 128 = 4096
    assert cfg["data"]["batch_size"] == 128
    assert "clip_grad" not in cfg  # clip_grad=None
    assert cfg["paramwise"]["rules"] == {}
    assert_imagenet_bs1024_adamw_swin_schedule(cfg)
    assert {k: cfg["mixup"][k] for k in MIXUP_CUTMIX} == MIXUP_CUTMIX
    assert cfg["train"]["label_smoothing"] == 0.1
    assert cfg["data"]["augment"] == IMAGENET_BS64_SWIN_224


def test_convnext_recipe_builds_layer_scale_and_skips_its_decay(monkeypatch):
    monkeypatch.chdir(ROOT)
    recipe = load_recipe("recipes/convnext_tiny.toml", ["data.path=/nonexistent/data/is/not/read"])
    built = build_static(recipe.cfg, steps_per_epoch=7)
    gammas = {n: p for n, p in built.model.named_parameters() if n.endswith(".gamma")}
    assert len(gammas) == 3 + 3 + 9 + 3
    decay_of = {id(p): g["weight_decay"] for g in built.optimizer.param_groups for p in g["params"]}
    assert all(decay_of[id(p)] == 0.0 for p in gammas.values())  # flat_decay_mult = 0


def test_resnet50_recipe_matches_mmpretrain_resnet50_8xb32_in1k(monkeypatch):
    cfg = load("resnet50_imagenet_bs256", monkeypatch)
    assert cfg["model"]["name"] == "resnet50" and cfg["data"]["batch_size"] == 32
    assert cfg["optimizer"] == {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
    assert cfg["schedule"] == [
        {"type": "MultiStepLR", "by_epoch": True, "milestones": [30, 60, 90], "gamma": 0.1}
    ]
    assert cfg["train"]["epochs"] == 100 and cfg["train"]["label_smoothing"] == 0.0
    assert "mixup" not in cfg and "clip_grad" not in cfg and cfg["paramwise"]["rules"] == {}
    # imagenet_bs32: bilinear crop and resize (MMPretrain's default), ResizeEdge 256 + CenterCrop 224
    augment = cfg["data"]["augment"]
    assert augment["interpolation"] == "bilinear" and augment["crop_pct"] == 0.875
    assert "auto_augment" not in augment and "re_prob" not in augment
