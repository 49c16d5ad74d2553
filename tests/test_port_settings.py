"""Settings of MMPretrain's own configs that the recipe can express and the port carries (issue 24's second
table), each checked on a verbatim copy of the config: the value in the recipe, and where it is a number of
steps or parameter groups, against what MMEngine builds from the original."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch
from PIL import Image
from timm.layers import DropPath

from trainer.data.transforms import build_transforms
from trainer.model import build_model
from trainer.optim.rules import RuleMatcher
from trainer.port.convert import check_eval_image_size
from trainer.port.freeze import freeze_rules
from trainer.port.names import mmpretrain_names
from trainer.port.report import Report

pytest.importorskip("mmengine", minversion="0.10.7")

from test_port_cli import TRAIN  # noqa: E402
from test_port_mmpretrain import (  # noqa: E402
    CONFIGS,
    FIXTURES,
    check_param_groups,
    check_schedule,
    inspect_json,
    plot_json,
    port,
)

RSB_A1 = CONFIGS / "resnet" / "resnet50_8xb256-rsb-a1-600e_in1k.py"
RSB_A2 = CONFIGS / "resnet" / "resnet50_8xb256-rsb-a2-300e_in1k.py"


def unmapped_keys(ported) -> list[str]:
    return [item.key for item in ported.report.unmapped]


def test_sigmoid_label_smoothing_is_bce_with_smoothing(tmp_path):
    """rsb-a1: LabelSmoothLoss(use_sigmoid=True, mode='original') is a binary cross-entropy on smoothed
    targets, which is timm's BinaryCrossEntropy(smoothing)."""
    _, ported = port(tmp_path, RSB_A1)
    assert ported.recipe["train"]["loss"] == "bce"
    assert ported.recipe["train"]["label_smoothing"] == 0.1
    assert not any("loss" in k for k in unmapped_keys(ported))


@pytest.mark.parametrize("config", [RSB_A1, RSB_A2], ids=["rsb-a1", "rsb-a2"])
def test_resnet_drop_path_rate_is_carried_with_mmpretrains_per_block_rates(tmp_path, config):
    _, ported = port(tmp_path, config)
    assert ported.recipe["model"]["drop_path_rate"] == 0.05
    assert "model.backbone.drop_path_rate" not in unmapped_keys(ported)
    model = build_model(ported.recipe["model"], device="meta")
    rates = [
        block.drop_path.drop_prob if isinstance(block.drop_path, DropPath) else 0.0
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4)
        for block in stage
    ]
    mmpretrain = torch.linspace(0, 0.05, 16).tolist()  # ResNet: linspace(0, rate, blocks), one per block
    np.testing.assert_allclose(rates, mmpretrain, rtol=1e-6, atol=1e-9)


def test_vit_drop_rate_is_timms_position_and_projection_dropout(tmp_path):
    _, ported = port(tmp_path, CONFIGS / "vision_transformer" / "vit-base-p16_64xb64_in1k.py")
    model_cfg = ported.recipe["model"]
    assert (model_cfg["pos_drop_rate"], model_cfg["proj_drop_rate"]) == (0.1, 0.1)
    assert "model.backbone.drop_rate" not in unmapped_keys(ported)
    model = build_model(model_cfg, device="meta")
    block = model.blocks[0]
    # MMPretrain: dropout after the position embedding, the attention projection, and both FFN layers
    assert model.pos_drop.p == block.attn.proj_drop.p == block.mlp.drop1.p == block.mlp.drop2.p == 0.1
    assert model.head_drop.p == 0.0 and block.attn.attn_drop.p == 0.0


def test_swin_stage_window_is_the_models_window(tmp_path):
    _, ported = port(tmp_path, CONFIGS / "simmim" / "benchmarks" / "swin-large-w14_8xb256-coslr-100e_in1k.py")
    assert ported.recipe["model"]["window_size"] == 14
    assert "model.backbone.stage_cfgs" not in unmapped_keys(ported)
    model = build_model(ported.recipe["model"], device="meta")
    assert tuple(model.layers[0].blocks[0].window_size) == (14, 14)


SCHEDULE_CASES = {
    "densenet121 (milestone at the last epoch)": CONFIGS / "densenet" / "densenet121_4xb256_in1k.py",
    "resnet50 in21k (cosine end past the run)": CONFIGS / "resnet" / "resnet50_8xb128_coslr-90e_in21k.py",
}


@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=SCHEDULE_CASES)
def test_windows_past_the_run_port_as_mmengine_runs_them(tmp_path, case):
    config = SCHEDULE_CASES[case]
    recipe, ported = port(tmp_path, config)
    described = inspect_json(tmp_path, recipe)
    check_param_groups(config, ported, described)
    check_schedule(config, ported, described, plot_json(tmp_path, recipe, 2), 2)
    notes = " ".join(str(item) for item in ported.report.notes)
    assert "never fire" in notes or "cut at the run's end" in notes


def fixture_depths(name: str) -> dict[str, list[int]]:
    fixture = json.loads((FIXTURES / "param_names" / f"{name}.json").read_text())
    return {p["name"]: p["layer_depth"] for p in fixture["params"]}


def test_beit_fine_tune_ln_key_gives_its_norms_no_decay_as_mmengine(tmp_path):
    """beit 100e fine-tune: `.ln` (MMPretrain's ln1/ln2 in each layer and the pooled ln2) is timm's
    norm1/norm2/fc_norm; every parameter's lr (layer decay) and weight decay equal MMEngine's."""
    config = CONFIGS / "beit" / "benchmarks" / "beit-base-p16_8xb128-coslr-100e_in1k.py"
    recipe, ported = port(tmp_path, config)
    described = inspect_json(tmp_path, recipe)
    check_param_groups(config, ported, described, fixture_depths("beit_base"))
    decay = {p["name"]: p["weight_decay"] for p in described["params"]}
    norms = [n for n in decay if ".norm1." in n or ".norm2." in n or n.startswith("fc_norm.")]
    assert len(norms) == 12 * 4 + 2 and all(decay[n] == 0.0 for n in norms)
    assert decay["blocks.0.attn.qkv.weight"] == 0.05
    unmapped = {i.key: i.message for i in ported.report.unmapped}
    assert "optim_wrapper.constructor" not in unmapped  # BEiT's layer ids are MMPretrain's (checked above)
    pos_embed = "optim_wrapper.paramwise_cfg.custom_keys['.pos_embed']"  # relative position bias: none
    assert [k for k in unmapped if "custom_keys" in k] == [pos_embed]
    assert unmapped[pos_embed].startswith("matches no parameter of timm's beit_base_patch16_224")


def test_repvgg_branch_norm_keys_give_batchnorms_no_decay_as_mmengine(tmp_path):
    config = CONFIGS / "repvgg" / "repvgg-A0_8xb32_in1k.py"
    recipe, ported = port(tmp_path, config)
    described = inspect_json(tmp_path, recipe)
    check_param_groups(config, ported, described)
    check_schedule(config, ported, described, plot_json(tmp_path, recipe, 2), 2)
    decay = {p["name"]: p["weight_decay"] for p in described["params"]}
    batchnorms = [n for n in decay if ".bn." in n or ".identity." in n]
    assert batchnorms and all(decay[n] == 0.0 for n in batchnorms if not n.endswith("identity.weight"))
    assert all(decay[n] == 1e-4 for n in decay if n.endswith("identity.weight"))  # 'branch_norm.bias' only
    assert not [i for i in ported.report.unmapped if "custom_keys" in i.key]


@pytest.mark.parametrize("name", ["resnet18_frozen", "deit_tiny_frozen", "vit_avg_frozen"])
def test_frozen_stages_freeze_the_parameters_mmpretrains_backbone_freezes(name):
    """The fixtures record which parameters MMPretrain's own backbone leaves with requires_grad = False."""
    fixture = json.loads((FIXTURES / "param_names" / f"{name}.json").read_text())
    model = build_model(fixture["timm"], device="meta")
    names = [n for n, _ in model.named_parameters()]
    family = "resnet" if name.startswith("resnet") else "vit"
    table = mmpretrain_names(family, fixture["timm"]["name"], names, fixture["model"]["head"]["type"])
    rules = freeze_rules(fixture["model"]["backbone"], family, table, {}, Report())
    matcher = RuleMatcher(list(rules))
    ours = {n for n in names if rules.get(matcher.match(n) or "", {}).get("freeze")}
    theirs = {p["name"] for p in fixture["params"] if p.get("frozen")}
    assert {table[n] for n in ours} == theirs and theirs


LINEAR_PROBES = {
    "mocov2 resnet50": CONFIGS / "mocov2" / "benchmarks" / "resnet50_8xb32-linear-steplr-100e_in1k.py",
    "mae vit-base": CONFIGS / "mae" / "benchmarks" / "vit-base-p16_8xb2048-linear-coslr-90e_in1k.py",
}


@pytest.mark.parametrize("case", LINEAR_PROBES, ids=LINEAR_PROBES)
def test_linear_probe_trains_only_the_head(tmp_path, case):
    recipe, ported = port(tmp_path, LINEAR_PROBES[case])
    described = {p["name"]: p for p in inspect_json(tmp_path, recipe)["params"]}
    trained = sorted(n for n, p in described.items() if p["group"] is not None)
    assert trained == (["fc.bias", "fc.weight"] if "resnet" in case else ["head.bias", "head.weight"])
    assert any(
        i.key == "model.backbone.frozen_stages" for i in [*ported.report.unmapped, *ported.report.notes]
    )


def test_efficientnet_center_crop_is_the_eval_size_and_the_recipe_dry_runs(tmp_path, capsys):
    """efficientnetv2-b0 trains on RandomResizedCrop(192) and evaluates on EfficientNetCenterCrop(224, padding
    0): the whole short edge, bicubic. The written recipe trains at 192 and evaluates at 224, and dry-runs."""
    config = CONFIGS / "efficientnet_v2" / "efficientnetv2-b0_8xb32_in1k.py"
    recipe, ported = port(tmp_path, config)
    data = tomllib.loads(recipe.read_text())["data"]
    assert (data["image_size"], data["eval_image_size"]) == (192, 224)
    assert (data["augment"]["crop_pct"], data["augment"]["interpolation"]) == (1.0, "bicubic")
    assert not [i for i in ported.report.unmapped if i.key.startswith("test_pipeline")]
    model = build_model(ported.recipe["model"], device="meta")
    train_tf, eval_tf = build_transforms(
        model, image_size=192, augment=data["augment"], eval_image_size=data["eval_image_size"]
    )
    image = Image.new("RGB", (300, 240))
    assert train_tf.transform(image).shape == (3, 192, 192)
    assert eval_tf.transform(image).shape == (3, 224, 224)
    assert TRAIN.main([str(recipe), "--dry-run"]) == 0
    assert "dry run: recipe is valid" in capsys.readouterr().out


def test_an_eval_size_a_fixed_size_model_cannot_take_is_reported_not_written():
    recipe = {"model": {"name": "vit_tiny_patch16_224"}, "data": {"image_size": 224, "eval_image_size": 384}}
    report = Report()
    check_eval_image_size(build_model(recipe["model"], device="meta"), recipe, report)
    assert "eval_image_size" not in recipe["data"]
    assert [str(i) for i in report.unmapped] == [
        "test_pipeline: evaluates at 384, trains at 224: timm's vit_tiny_patch16_224 takes one input size "
        "(both at 224)"
    ]
