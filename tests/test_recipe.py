"""Recipe loading: bases, deep merge, overrides, imports, validation errors and the TOML dump."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from trainer.errors import RecipeError
from trainer.keys import format_key
from trainer.recipe.load import absolute_paths, load_recipe, parse_override

MINIMAL = """
[model]
name = "test_vit"
num_classes = 10

[data]
path = "data/digits"
batch_size = 8

[train]
epochs = 2

[optimizer]
type = "AdamW"
lr = 1e-3
weight_decay = 0.05
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, overrides: tuple[str, ...] = ()) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    err = info.value
    assert "\n" not in str(err)
    assert str(err).startswith("recipe error: ")
    return err


def test_minimal_recipe_fills_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, "r.toml", MINIMAL))
    assert recipe.cfg["train"]["accumulate"] == 1
    assert recipe.cfg["train"]["precision"] == "no"
    assert recipe.cfg["optimizer"] == {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}
    assert recipe.cfg["output_dir"] == "runs/r"
    assert recipe.cfg["schedule"] == []


def test_base_is_resolved_relative_to_the_file_that_names_it(tmp_path):
    write(tmp_path, "recipes/_base/common.toml", MINIMAL)
    child = write(tmp_path, "recipes/child.toml", 'base = "_base/common.toml"\n[optimizer]\nlr = 5e-4\n')
    recipe = load_recipe(child)
    assert recipe.cfg["optimizer"] == {"type": "AdamW", "lr": 5e-4, "weight_decay": 0.05}
    assert [p.name for p in recipe.chain] == ["common.toml", "child.toml"]


def test_chain_of_bases_merges_tables_and_replaces_lists(tmp_path):
    write(
        tmp_path,
        "a.toml",
        MINIMAL + '[[schedule]]\ntype = "LinearLR"\nend = 1\n[[schedule]]\n'
        'type = "CosineAnnealingLR"\nbegin = 1\n[paramwise]\nnorm_decay_mult = 0.0\n',
    )
    write(tmp_path, "b.toml", 'base = "a.toml"\n[paramwise]\nbias_decay_mult = 0.0\n')
    c = write(tmp_path, "c.toml", 'base = "b.toml"\n[[schedule]]\ntype = "MultiStepLR"\nmilestones = [1]\n')
    recipe = load_recipe(c)
    assert recipe.cfg["paramwise"]["norm_decay_mult"] == 0.0
    assert recipe.cfg["paramwise"]["bias_decay_mult"] == 0.0
    assert [e["type"] for e in recipe.cfg["schedule"]] == ["MultiStepLR"]


def test_list_of_bases_merges_in_order(tmp_path):
    write(tmp_path, "model.toml", '[model]\nname = "test_vit"\n')
    write(tmp_path, "rest.toml", MINIMAL.replace('name = "test_vit"', 'name = "test_resnet"'))
    top = write(tmp_path, "top.toml", 'base = ["rest.toml", "model.toml"]\n')
    assert load_recipe(top).cfg["model"]["name"] == "test_vit"


def test_inheritance_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.toml", 'base = "b.toml"\n' + MINIMAL)
    b = write(tmp_path, "b.toml", 'base = "a.toml"\n')
    err = error_of(b)
    assert err.key == "base"
    assert "cycle" in err.message and "a.toml" in err.message


def test_missing_base_names_the_file_that_refers_to_it(tmp_path):
    write(tmp_path, "common.toml", MINIMAL)
    child = write(tmp_path, "child.toml", 'base = "comon.toml"\n')
    err = error_of(child)
    assert err.key == "base"
    assert err.file == str(child)
    assert "no such recipe file" in err.message and "'common.toml'" in err.message


def test_missing_recipe_file(tmp_path):
    err = error_of(tmp_path / "nope.toml")
    assert "no such recipe file" in err.message


def test_toml_syntax_error_reports_line_and_column(tmp_path):
    path = write(tmp_path, "r.toml", MINIMAL + "\n[train]\nepochs = \n")
    err = error_of(path)
    assert err.key.startswith("line ")
    assert "TOML syntax error" in err.message


def test_duplicate_key_is_a_syntax_error(tmp_path):
    path = write(tmp_path, "r.toml", MINIMAL.replace("lr = 1e-3", "lr = 1e-3\nlr = 2e-3"))
    assert "TOML syntax error" in error_of(path).message


def test_duplicate_key_names_the_key_and_both_lines(tmp_path):
    path = write(tmp_path, "r.toml", MINIMAL.replace("lr = 1e-3", "lr = 1e-3\nlr = 2e-3"))
    err = error_of(path)
    assert (err.key, err.file) == ("optimizer.lr", str(path))
    assert err.message.endswith("set twice (lines 15 and 16); keep one")


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        (
            '[paramwise.rules."head.*"]\nlr_mult = 2.0\nlr_mult = 3.0\n',
            'paramwise.rules."head.*".lr_mult',
            (2, 3),
        ),
        ("[model]\nname = 'a'\n'name' = 'b'\n", "model.name", (2, 3)),
        ("[train]\nx.y = 1\nx . y = 2\n", "train.x.y", (2, 3)),
        ('[[schedule]]\ntype = "A"\n[[schedule]]\ntype = "B"\ntype = "C"\n', "schedule[1].type", (4, 5)),
        ("[optimizer]\nbetas = [0.9,\n  0.99]\nbetas = [\n  0.9,\n  0.9]\n", "optimizer.betas", (2, 4)),
    ],
)
def test_duplicate_key_is_found_under_dotted_quoted_and_array_table_keys(tmp_path, text, key, lines):
    err = error_of(write(tmp_path, "r.toml", text))
    assert err.key == key
    assert f"set twice (lines {lines[0]} and {lines[1]})" in err.message


def test_overwrite_that_is_no_plain_repeat_keeps_the_line_and_column(tmp_path):
    err = error_of(write(tmp_path, "r.toml", "[train]\nx = 1\nx.y = 2\n"))
    assert err.key == "line 3, column 8"
    assert err.message == "TOML syntax error: Cannot overwrite a value"


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        (MINIMAL.replace("[optimizer]", "[optimzer]"), "optimzer", "did you mean 'optimizer'"),
        (MINIMAL + "\n[paramwise]\nweight_decays = 1.0\n", "paramwise.weight_decays", None),
        (MINIMAL.replace("epochs = 2", "epochs = 2\naccumlate = 2"), "train.accumlate", "'accumulate'"),
        (
            MINIMAL + '\n[paramwise.rules."head.*"]\nlr_mul = 2.0\n',
            'paramwise.rules."head.*".lr_mul',
            "'lr_mult'",
        ),
        ("seeed = 3\n" + MINIMAL, "seeed", "'seed'"),
    ],
)
def test_unknown_key_is_an_error_with_did_you_mean(tmp_path, text, key, hint):
    err = error_of(write(tmp_path, "r.toml", text))
    assert err.key == key
    assert "unknown" in err.message
    if hint:
        assert hint in err.message


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("epochs = 2", 'epochs = "2"', "train.epochs", "expected an integer, got a string '2'"),
        ("batch_size = 8", "batch_size = 8.5", "data.batch_size", "expected an integer"),
        ("epochs = 2", 'epochs = 2\nlog_with = "tensorboard"', "train.log_with", "expected a list"),
        ("epochs = 2", 'epochs = 2\nprecision = "fp8"', "train.precision", "'no', 'fp16' or 'bf16'"),
        ("epochs = 2", "epochs = 2\naccumulate = 0", "train.accumulate", "must be >= 1"),
        ("epochs = 2", "epochs = 0", "train.epochs", "must be >= 1"),
        ("epochs = 2", "epochs = 2\nmax_steps = 10", "train.max_steps", "not both"),
        ("epochs = 2", "accumulate = 2", "train", "set train.epochs or train.max_steps"),
        (
            'path = "data/digits"',
            'path = "data/digits"\nimage_column = 3',
            "data.image_column",
            "expected a string",
        ),
    ],
)
def test_wrong_type_or_range_names_the_key(tmp_path, old, new, key, words):
    err = error_of(write(tmp_path, "r.toml", MINIMAL.replace(old, new)))
    assert err.key == key
    assert words in err.message


def test_missing_required_key(tmp_path):
    err = error_of(write(tmp_path, "r.toml", MINIMAL.replace('name = "test_vit"', "")))
    assert err.key == "model.name"
    assert "required" in err.message


def test_missing_required_table(tmp_path):
    text = MINIMAL.split("[optimizer]")[0]
    err = error_of(write(tmp_path, "r.toml", text))
    assert err.key == "optimizer"


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("[clip_grad]\nmax_norm = -1.0\n", "clip_grad.max_norm", "must be > 0"),
        ("[clip_grad]\nnorm_type = 2.0\n", "clip_grad.max_norm", "required"),
        ('[clip_grad]\ntype = "value"\n', "clip_grad.clip_value", "required"),
        ("[clip_grad]\nmax_norm = 1.0\nnorm_type = 0.0\n", "clip_grad.norm_type", "> 0"),
        ('[clip_grad]\ntype = "values"\nclip_value = 1.0\n', "clip_grad.type", "'norm' or 'value'"),
    ],
)
def test_clip_grad_is_checked(tmp_path, extra, key, words):
    err = error_of(write(tmp_path, "r.toml", MINIMAL + "\n" + extra))
    assert err.key == key
    assert words in err.message


def test_error_names_the_base_file_that_set_the_bad_key(tmp_path):
    base = write(tmp_path, "base.toml", MINIMAL.replace("epochs = 2", "epochs = -1"))
    child = write(tmp_path, "child.toml", 'base = "base.toml"\n[optimizer]\nlr = 5e-4\n')
    err = error_of(child)
    assert err.key == "train.epochs"
    assert err.file == str(base)


def test_unknown_model_name_suggests_close_timm_names(tmp_path):
    err = error_of(write(tmp_path, "r.toml", MINIMAL.replace("test_vit", "test_vitt")))
    assert err.key == "model.name"
    assert "'test_vit'" in err.message


def test_override_parses_toml_values(tmp_path):
    path = write(tmp_path, "r.toml", MINIMAL)
    recipe = load_recipe(
        path,
        [
            "optimizer.lr=3e-4",
            'train.precision="bf16"',
            "optimizer.betas=[0.9, 0.95]",
            "data.path=/data/imagenet",
            'paramwise.rules."head.*".lr_mult=10',
        ],
    )
    assert recipe.cfg["optimizer"]["lr"] == 3e-4
    assert recipe.cfg["train"]["precision"] == "bf16"
    assert recipe.cfg["optimizer"]["betas"] == [0.9, 0.95]
    assert recipe.cfg["data"]["path"] == "/data/imagenet"
    assert recipe.cfg["paramwise"]["rules"]["head.*"]["lr_mult"] == 10


def test_override_can_index_a_list(tmp_path):
    path = write(tmp_path, "r.toml", MINIMAL + '[[schedule]]\ntype = "LinearLR"\nend = 1\n')
    recipe = load_recipe(path, ["schedule[0].end=2"])
    assert recipe.cfg["schedule"][0]["end"] == 2


def test_override_of_unknown_key_is_an_error_attributed_to_set(tmp_path):
    err = error_of(write(tmp_path, "r.toml", MINIMAL), ("train.epoch=3",))
    assert err.key == "train.epoch"
    assert err.file == "--set"
    assert "did you mean 'epochs'" in err.message


def test_override_with_wrong_type_is_an_error(tmp_path):
    err = error_of(write(tmp_path, "r.toml", MINIMAL), ("train.epochs=abc",))
    assert err.key == "train.epochs" and err.file == "--set"


@pytest.mark.parametrize("item", ["noequals", "a..b=1", "=1", "schedule[0].end=1"])
def test_malformed_override_is_an_error(tmp_path, item):
    err = error_of(write(tmp_path, "r.toml", MINIMAL), (item,))
    assert err.file == "--set"


def test_parse_override_keeps_quoted_globs():
    assert parse_override('paramwise.rules."blocks.*.norm*".decay_mult=0') == (
        ("paramwise", "rules", "blocks.*.norm*", "decay_mult"),
        0,
    )
    assert format_key(("paramwise", "rules", "head.*", "lr_mult")) == 'paramwise.rules."head.*".lr_mult'


def test_imports_are_imported_before_validation(tmp_path, monkeypatch):
    write(tmp_path, "my_ext_mod.py", "IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_recipe(write(tmp_path, "r.toml", 'imports = ["my_ext_mod"]\n' + MINIMAL))
    assert sys.modules["my_ext_mod"].IMPORTED


def test_import_that_fails_is_an_error(tmp_path):
    err = error_of(write(tmp_path, "r.toml", 'imports = ["no_such_module_xyz"]\n' + MINIMAL))
    assert err.key == "imports[0]"


def test_resolved_recipe_round_trips_as_toml(tmp_path):
    write(tmp_path, "base.toml", MINIMAL + '[paramwise.rules."head.*"]\nlr_mult = 10.0\n')
    child = write(tmp_path, "child.toml", 'base = "base.toml"\n[[schedule]]\ntype = "LinearLR"\nend = 1\n')
    recipe = load_recipe(child, ["optimizer.lr=2e-3"])
    text = recipe.to_toml()
    assert tomllib.loads(text) == absolute_paths(recipe.cfg)  # local paths hold from any working directory
    again = load_recipe(write(tmp_path, "resolved.toml", text))
    assert {k: v for k, v in again.cfg.items() if k != "output_dir"} == {
        k: v for k, v in absolute_paths(recipe.cfg).items() if k != "output_dir"
    }
