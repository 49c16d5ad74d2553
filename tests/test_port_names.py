"""The port's parameter-name tables against MMPretrain's own models, and custom_keys -> glob translation.

tests/fixtures/mmpretrain/param_names/*.json hold the parameters of MMPretrain's models (written by
make_param_names.py with MMPretrain installed, which also checked that copying weights by the table gives
the same logits); here the tables must rename the timm model's parameters onto exactly those names.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import torch

from trainer.model import build_model
from trainer.optim.rules import RuleMatcher
from trainer.port.names import bias_differences, family_table, mmpretrain_names, report_bias_differences
from trainer.port.report import Report
from trainer.port.rules import translate_custom_keys, winners
from trainer.port.tables import FAMILIES
from trainer.port.tables.base import Kind

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmpretrain" / "param_names"
MODELS = sorted(FIXTURES.glob("*.json"))


def fixture_model(path: Path) -> tuple[dict, list[str], dict[str, str], dict[str, list[int]]]:
    """The fixture, the names and shapes of its timm model, and the port's renaming of them."""
    fixture, shapes, _ = _timm_side(path)
    head = fixture["model"]["head"]["type"]
    table = mmpretrain_names(fixture["family"], fixture["timm"]["name"], list(shapes), head)
    assert table is not None
    return fixture, list(shapes), table, shapes


@cache
def _timm_side(path: Path) -> tuple[dict, dict[str, list[int]], dict[str, str]]:
    """The fixture and its timm model's parameter shapes and owning-module kinds (built once)."""
    fixture = json.loads(path.read_text())
    model = build_model(fixture["timm"], device="meta")
    shapes = {n: list(p.shape) for n, p in model.named_parameters()}
    kinds = {
        f"{prefix}.{n}" if prefix else n: owner_kind(module)
        for prefix, module in model.named_modules()
        for n, _ in module.named_parameters(recurse=False)
    }
    return fixture, shapes, kinds


def declared(fixture: dict, kind: Kind, name: str) -> bool:
    """Whether the fixture family's table declares `name` a difference of this kind."""
    table = family_table(fixture["family"], fixture["timm"]["name"])
    return any(d.matches(name) for d in table.declared(kind))


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_table_renames_timm_parameters_onto_mmpretrains(path):
    """One to one with equal shapes, except where the table declares a difference: a timm parameter that is
    MMPretrain's reshaped (same size) or a slice of a shared one, or one model's parameter the other lacks."""
    fixture, names, table, shapes = fixture_model(path)
    theirs = {p["name"]: p["shape"] for p in fixture["params"]}
    image = set(table.values())
    only_theirs = {m for m in theirs if m not in image}
    assert only_theirs == {m for m in theirs if declared(fixture, Kind.MMPRETRAIN_ONLY, m)}
    only_ours = {t for t, m in table.items() if m not in theirs}
    assert only_ours == {t for t in names if declared(fixture, Kind.TIMM_ONLY, t)}
    shared = Counter(table.values())
    for timm_name, mm_name in table.items():
        if mm_name not in theirs:
            continue
        if shared[mm_name] > 1:
            assert declared(fixture, Kind.PART, timm_name), (timm_name, mm_name)
            parts = [shapes[t] for t, m in table.items() if m == mm_name]
            assert sum(map(math.prod, parts)) <= math.prod(theirs[mm_name]), (timm_name, mm_name)
        elif declared(fixture, Kind.RESHAPED, timm_name):
            assert shapes[timm_name] != theirs[mm_name], timm_name
            assert math.prod(shapes[timm_name]) == math.prod(theirs[mm_name]), (timm_name, mm_name)
        else:
            assert shapes[timm_name] == theirs[mm_name], (timm_name, mm_name)


def test_every_declared_difference_occurs_in_its_familys_fixtures():
    """No declaration is dead: each matches a parameter of a fixture of its family."""
    declared_by: dict[str, set[str]] = {}
    used_by: dict[str, set[str]] = {}
    for path in MODELS:
        fixture, names, _, _ = fixture_model(path)
        theirs = [p["name"] for p in fixture["params"]]
        for d in family_table(fixture["family"], fixture["timm"]["name"]).differences:
            declared_by.setdefault(fixture["family"], set()).add(d.pattern)
            if any(d.matches(n) for n in (theirs if d.kind is Kind.MMPRETRAIN_ONLY else names)):
                used_by.setdefault(fixture["family"], set()).add(d.pattern)
    assert used_by == declared_by


def test_every_rule_renames_a_parameter_of_its_familys_fixtures():
    """No rule is untested: each is the first to match some parameter of a fixture of its family."""
    rules_by: dict[str, set[str]] = {}
    used_by: dict[str, set[str]] = {}
    for path in MODELS:
        fixture, names, _, _ = fixture_model(path)
        table = family_table(fixture["family"], fixture["timm"]["name"])
        rules_by.setdefault(fixture["family"], set()).update(p.pattern for p, _ in table.rules)
        for name in names:
            first = next(p for p, _ in table.rules if p.fullmatch(name))
            used_by.setdefault(fixture["family"], set()).add(first.pattern)
    assert used_by == rules_by


def test_fixtures_cover_every_family_with_a_table():
    assert {json.loads(m.read_text())["family"] for m in MODELS} == set(FAMILIES)
    assert len(MODELS) >= 9


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_renamed_parameters_belong_to_modules_mmengine_classifies_alike(path):
    """norm_decay_mult, dwconv_decay_mult and bias_decay_mult follow the owning module's kind and the
    attribute name: both must agree between timm's parameter and MMPretrain's."""
    fixture, names, table, _ = fixture_model(path)
    kinds = {p["name"]: p["kind"] for p in fixture["params"]}
    timm_kinds = _timm_side(path)[2]
    for timm_name, mm_name in table.items():
        if mm_name in kinds:
            assert timm_kinds[timm_name] == kinds[mm_name], (timm_name, mm_name)
    # a `bias` in one model only changes what bias_lr_mult/bias_decay_mult apply to: the port reports it
    # (ConvNeXt V2's GRN beta, timm's bias; EVA-02's q and v biases, parts of MMPretrain's qkv.bias)
    differ = bias_differences(table)
    assert all(".grn.bias" in n or declared(fixture, Kind.PART, n) for n in differ), differ


def test_a_bias_only_timm_calls_one_is_reported_where_bias_multipliers_apply():
    _, names, table, _ = fixture_model(FIXTURES / "convnextv2_atto.json")
    assert sorted(bias_differences(table)) == sorted(n for n in names if ".grn.bias" in n)
    report = Report()
    report_bias_differences(table, {"bias_decay_mult": 0.0}, "pw", report)
    assert [i.key for i in report.unmapped] == ["pw.bias_decay_mult"]
    assert "grn.bias" in report.unmapped[0].message
    report = Report()
    report_bias_differences(table, {"norm_decay_mult": 0.0}, "pw", report)
    report_bias_differences(table, {"bias_decay_mult": 0.0, "flat_decay_mult": 0.0}, "pw", report)
    assert not report.unmapped  # GRN's beta is 1-D: flat_decay_mult gives it the same decay


def test_biases_that_are_parts_of_mmpretrains_qkv_bias_are_reported_where_bias_multipliers_apply():
    _, names, table, _ = fixture_model(FIXTURES / "eva02_tiny.json")
    assert sorted(bias_differences(table)) == sorted(n for n in names if n.endswith(("q_bias", "v_bias")))
    report = Report()
    report_bias_differences(table, {"bias_lr_mult": 2.0}, "pw", report)
    assert [i.key for i in report.unmapped] == ["pw.bias_lr_mult"]
    assert "'blocks.0.attn.q_bias' ('backbone.layers.0.attn.qkv.bias')" in report.unmapped[0].message


def owner_kind(module) -> str:
    """MMEngine's classification of the module that directly owns a parameter (as make_param_names.py)."""
    from trainer.optim.paramwise import NORM_TYPES

    if isinstance(module, NORM_TYPES):
        return "norm"
    if isinstance(module, torch.nn.Conv2d) and module.in_channels == module.groups:
        return "dwconv"
    return "other"


def assignments(rules: dict[str, dict], names: list[str]) -> dict[str, tuple | None]:
    matcher = RuleMatcher(list(rules))
    out = {}
    for name in names:
        glob = matcher.match(name)
        out[name] = None if glob is None else tuple(sorted(rules[glob].items()))
    return out


KEYS = {
    "swin_tiny": {
        "backbone.stages.0": {"lr_mult": 0.2},
        "stages.1.downsample": {"lr_mult": 0.4, "decay_mult": 0.0},
        "downsample": {"decay_mult": 0.5},
        ".relative_position_bias_table": {"decay_mult": 0.0},
        "norm": {"decay_mult": 0.0},
        "head": {"lr_mult": 10.0},
    },
    "resnetv1d18": {
        "downsample.1": {"lr_mult": 0.5},
        "bn": {"decay_mult": 0.0},
        "backbone.stem": {"lr_mult": 0.1},
    },
    "convnext_atto": {
        ".gamma": {"decay_mult": 0.0},
        "downsample_layers.0": {"lr_mult": 0.3},
        "norm3": {"lr_mult": 2},
    },
    "deit_tiny": {
        "backbone": {"lr_mult": 0.5},
        "layers.1": {"lr_mult": 0.2},
        ".ln": {"decay_mult": 0.0},
        "ffn": {"lr_mult": 0.7},
        "head.layers": {"lr_mult": 3.0},
    },
}


@pytest.mark.parametrize("model", KEYS, ids=KEYS)
def test_globs_give_every_parameter_the_key_mmengine_gives_its_mmpretrain_name(model):
    _, names, table, _ = fixture_model(FIXTURES / f"{model}.json")
    keys = KEYS[model]
    rules = translate_custom_keys(keys, names, table, model, "optim_wrapper.paramwise_cfg", Report())
    won = winners(keys, table)
    expected = {n: None if k is None else tuple(sorted(keys[k].items())) for n, k in won.items()}
    got = assignments(rules, names)
    assert got == {n: None if v is None else tuple((a, float(x)) for a, x in v) for n, v in expected.items()}
    assert any(v is not None for v in got.values())


def test_resnet_d_shortcut_keys_follow_mmpretrains_numbering():
    """MMPretrain's V1d shortcut is (pool, conv, norm) where the block strides: downsample.1 is the conv, .2
    the norm; its unpooled shortcut (none in ResNet-18-D's layer1) would be (conv, norm)."""
    _, names, table, _ = fixture_model(FIXTURES / "resnetv1d18.json")
    report = Report()
    keys = {
        "downsample.1": {"lr_mult": 0.5},
        "downsample.2": {"decay_mult": 0.0},
        "downsample.0": {"lr_mult": 2.0},
    }
    rules = translate_custom_keys(keys, names, table, "resnet18d", "k", report)
    got = {n: v for n, v in assignments(rules, names).items() if v}
    assert got == {
        **{f"layer{i}.0.downsample.1.weight": (("lr_mult", 0.5),) for i in (2, 3, 4)},
        **{
            f"layer{i}.0.downsample.2.{a}": (("decay_mult", 0.0),)
            for i in (2, 3, 4)
            for a in ("weight", "bias")
        },
    }
    assert [i.key for i in report.unmapped] == ["k.custom_keys['downsample.0']"]


def test_simple_keys_become_the_hand_ported_globs():
    _, names, table, _ = fixture_model(FIXTURES / "deit_tiny.json")
    rules = translate_custom_keys(
        {".cls_token": {"decay_mult": 0.0}, ".pos_embed": {"decay_mult": 0.0}},
        names,
        table,
        "m",
        "k",
        Report(),
    )
    assert rules == {"cls_token": {"decay_mult": 0.0}, "pos_embed": {"decay_mult": 0.0}}
    _, names, table, _ = fixture_model(FIXTURES / "swin_tiny.json")
    rules = translate_custom_keys(
        {".relative_position_bias_table": {"decay_mult": 0.0}}, names, table, "m", "k", Report()
    )
    assert rules == {"*relative_position_bias_table*": {"decay_mult": 0.0}}


def test_keys_that_match_nothing_or_lose_everywhere_are_reported_not_dropped():
    _, names, table, _ = fixture_model(FIXTURES / "deit_tiny.json")
    report = Report()
    keys = {
        ".absolute_pos_embed": {"decay_mult": 0.0},
        "backbone": {"lr_mult": 0.5},
        ".ln": {"decay_mult": 0.0},
    }
    rules = translate_custom_keys(keys, names, table, "deit_tiny_patch16_224", "pw", report)
    assert all(r == {"lr_mult": 0.5} for r in rules.values())
    assert [i.key for i in report.unmapped] == ["pw.custom_keys['.absolute_pos_embed']"]
    assert "matches no parameter of timm's deit_tiny_patch16_224" in report.unmapped[0].message
    assert any(i.key == "pw.custom_keys['.ln']" and "longer key" in i.message for i in report.notes)


def test_without_a_table_keys_are_matched_on_timm_names_and_reported():
    model = build_model({"name": "test_vit", "num_classes": 4}, device="meta")
    names = [n for n, _ in model.named_parameters()]
    report = Report()
    rules = translate_custom_keys(
        {".cls_token": {"decay_mult": 0.0}, "nothing": {}}, names, None, "test_vit", "k", report
    )
    assert rules == {"cls_token": {"decay_mult": 0.0}}
    assert [i.key for i in report.unmapped] == ["k.custom_keys['.cls_token']", "k.custom_keys['nothing']"]
    assert "no MMPretrain->timm parameter-name table" in report.unmapped[0].message
