"""Schedules against values recorded from MMEngine 0.10.7's Runner (tests/data/mmengine_vectors.json, written
by scripts/make_reference_vectors.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.errors import RecipeError
from trainer.schedule import build_schedule

VECTORS = Path(__file__).resolve().parent / "data" / "mmengine_vectors.json"


def load() -> dict:
    return json.loads(VECTORS.read_text())


def comparable() -> list[str]:
    """Every Runner vector with one update per iteration (V14 counts micro-batches; V17 is rejected)."""
    return [
        name
        for name, v in load()["schedule_vectors"].items()
        if v["accumulative_counts"] == 1 and not name.startswith("V17")
    ]


def groups_of(vector: dict) -> list[dict]:
    group = {k: v for k, v in vector["optimizer"].items() if k != "type"}
    if vector["paramwise_cfg"]:  # custom_keys {"b.": lr_mult 0.1}: a second group at a tenth of the lr
        return [group, {**group, "lr": group["lr"] * 0.1}]
    return [group]


@pytest.mark.parametrize("name", comparable())
def test_curve_equals_mmengine_runner_vector(name):
    vector = load()["schedule_vectors"][name]
    train = {"epochs": vector["max_epochs"]} if vector["max_epochs"] else {"max_steps": vector["max_iters"]}
    schedule = build_schedule(
        vector["param_scheduler"],
        param_groups=groups_of(vector),
        steps_per_epoch=vector["epoch_length"],
        train_cfg=train,
    )
    param = "momentum" if "momentum" in vector["recorded"][0] or "betas" in vector["recorded"][0] else "lr"
    for step, expected in vector["values_at_iteration"].items():
        got = [g[param] for g in schedule.values(int(step))]
        if isinstance(expected, list) and isinstance(expected[0], list):  # [betas, momentum]
            expected = [expected[1]]
        elif not isinstance(expected, list):
            expected = [expected]
        assert got == pytest.approx(expected, rel=1e-9, abs=0), step


def test_by_epoch_scheduler_in_max_steps_training_is_rejected_not_silently_frozen():
    vector = load()["schedule_vectors"]["V17_by_epoch_scheduler_in_iter_based_loop"]
    with pytest.raises(RecipeError) as info:
        build_schedule(
            vector["param_scheduler"],
            param_groups=groups_of(vector),
            steps_per_epoch=10,
            train_cfg={"max_steps": vector["max_iters"]},
        )
    assert info.value.key == "schedule[0].by_epoch"
    assert "convert_to_iter_based" in info.value.message


def test_reduce_on_plateau_trace_equals_mmengine():
    trace = load()["direct_stepping"]["reduce_on_plateau_patience2_factor0.5_cooldown1_min0.02"]
    entry = dict(type="ReduceOnPlateauLR", patience=2, factor=0.5, cooldown=1, min_value=0.02)
    schedule = build_schedule(
        [entry], param_groups=[{"lr": 0.1, "momentum": 0.9}], steps_per_epoch=5, train_cfg={"epochs": 13}
    )
    for row in trace:
        step = (row["epoch"] + 1) * 5  # validation after epoch e, before step (e + 1) * steps_per_epoch
        schedule.report_metric("loss", row["loss"], step)
        assert schedule.values(step)[0]["lr"] == pytest.approx(row["lr"], rel=1e-12)


def test_every_stored_vector_is_checked_and_comes_from_mmengine_0_10_7():
    stored = load()
    assert stored["meta"]["mmengine_version"] == "0.10.7"
    names = set(stored["schedule_vectors"])
    assert len(comparable()) == 25
    assert names - set(comparable()) == {
        "V14_accumulation_scheduler_steps_per_dataloader_iter",  # we count updates, MMEngine micro-batches
        "V17_by_epoch_scheduler_in_iter_based_loop",  # rejected: see the test above
    }


def test_the_stored_vectors_are_the_generating_scripts_cases():
    """tests/data/mmengine_vectors.json holds the cases scripts/make_reference_vectors.py defines, each with
    the values MMEngine's Runner gave it there (rerun the script after changing a case)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "make_reference_vectors.py"
    spec = importlib.util.spec_from_file_location("make_reference_vectors", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.DEFAULT_OUT == VECTORS
    stored = load()["schedule_vectors"]
    assert list(stored) == list(script.VECTORS)
    for name, case in script.VECTORS.items():
        entry = json.loads(json.dumps({k: v for k, v in case.items() if k not in ("keys", "query", "full")}))
        assert {k: stored[name][k] for k in entry} == entry, name
        assert list(stored[name]["values_at_iteration"]) == [str(i) for i in case["query"]], name
