"""describe_params / format_description and scripts/inspect_recipe.py: every parameter, its group and why."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import timm
from torch import nn

from trainer.optim import build_optimizer, describe_params, format_description

ROOT = Path(__file__).resolve().parents[1]
ADAMW = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}
RECIPE = """
[model]
name = "test_vit"
num_classes = 10

[data]
path = "data/digits"
batch_size = 8

[train]
epochs = 1

[optimizer]
type = "SGD"
lr = 0.8
weight_decay = 1e-4

[paramwise]
norm_decay_mult = 0.0

[paramwise.rules]
"head.*" = { lr_mult = 0.1 }
"patch_embed.*" = { freeze = true }
"""


@pytest.fixture
def described():
    model = timm.create_model("test_vit", pretrained=False, num_classes=10)
    model.cls_token.requires_grad_(False)
    paramwise = {
        "norm_decay_mult": 0.0,
        "rules": {"head.*": {"lr_mult": 10.0}, "patch_embed.*": {"freeze": True}},
    }
    return describe_params(model, build_optimizer(model, ADAMW, paramwise))


def test_every_parameter_is_listed_with_its_settings(described):
    params = {p["name"]: p for p in described["params"]}
    assert len(params) == 80
    assert params["head.weight"] == {
        "name": "head.weight",
        "shape": [10, 64],
        "group": "lr_mult=10.0",
        "lr": 0.01,
        "weight_decay": 0.05,
        "rule": "head.*",
        "kind": None,
        "frozen": False,
    }
    assert (
        params["blocks.0.norm1.weight"]["kind"] == "norm"
        and params["blocks.0.norm1.weight"]["weight_decay"] == 0
    )
    assert params["blocks.0.attn.qkv.weight"]["rule"] is None


def test_frozen_parameters_are_listed_without_a_group(described):
    params = {p["name"]: p for p in described["params"]}
    assert params["patch_embed.proj.weight"]["frozen"] and params["patch_embed.proj.weight"]["group"] is None
    assert params["patch_embed.proj.weight"]["rule"] == "patch_embed.*"  # frozen by this rule
    assert params["cls_token"]["frozen"] and params["cls_token"]["rule"] is None  # frozen in the model
    held = {n for g in described["groups"] for n in [g["name"]]}
    assert held == {"default", "no_decay", "lr_mult=10.0"}


def test_groups_and_totals_add_up(described):
    totals = described["totals"]
    assert totals["tensors"] == 80 and totals["frozen_tensors"] == 3 and totals["groups"] == 3
    assert sum(g["tensors"] for g in described["groups"]) == totals["trainable_tensors"] == 77
    assert sum(g["numel"] for g in described["groups"]) == totals["trainable_params"]
    assert described["groups"][0]["betas"] == [0.9, 0.999]
    json.dumps(described)  # plain JSON all the way down


def test_shared_parameters_appear_under_every_name():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, shared)
    params = describe_params(model, build_optimizer(model, ADAMW, {"bypass_duplicate": True}))["params"]
    assert [p["name"] for p in params] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert params[2]["group"] == params[0]["group"] == "default"
    assert params[2]["kind"] == "duplicate"


def test_table_is_aligned_and_ends_with_groups_and_totals(described):
    text = format_description(described)
    lines = text.splitlines()
    header = lines[0]
    assert header.split() == ["name", "shape", "group", "lr", "weight_decay", "rule", "type", "frozen"]
    head_row = next(line for line in lines if line.startswith("head.weight "))
    assert head_row.index("0.01") == header.index("lr") and "head.*" in head_row
    assert "AdamW param groups (3):" in text
    assert lines[-1].startswith("totals: ") and "frozen 3" not in lines[-1]  # frozen counts elements
    assert "(3 tensors)" in lines[-1]


def run_script(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("inspect_recipe", ROOT / "scripts" / "inspect_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def test_script_prints_the_table_and_writes_json(tmp_path, capsys):
    recipe = tmp_path / "vit.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "params.json"
    assert run_script([str(recipe), "--set", "optimizer.lr=0.4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "head.weight" in printed and "SGD param groups" in printed
    data = json.loads(out.read_text())
    params = {p["name"]: p for p in data["params"]}
    assert params["head.weight"]["lr"] == pytest.approx(0.04) and params["head.weight"]["rule"] == "head.*"
    assert params["blocks.0.norm1.weight"]["weight_decay"] == 0.0
    assert params["blocks.0.attn.qkv.weight"]["weight_decay"] == 1e-4
    assert params["patch_embed.proj.bias"]["frozen"]


def test_script_reports_a_rule_matching_nothing_as_one_line(tmp_path, capsys):
    recipe = tmp_path / "vit.toml"
    recipe.write_text(RECIPE + '"blocks.99.*" = { lr_mult = 0.1 }\n')
    with pytest.raises(SystemExit) as info:
        run_script([str(recipe)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f'recipe error: {recipe}: paramwise.rules."blocks.99.*": matches no parameter of '
        "VisionTransformer; 72 names start with 'blocks.': 'blocks.0.norm1.weight' ... "
        "'blocks.5.mlp.fc2.bias'"
    )
