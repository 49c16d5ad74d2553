"""The built Schedule: per-step values, apply(), resume equality, ReduceOnPlateau state, real optimizers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.errors import RecipeError
from trainer.model import build_model
from trainer.optim import build_optimizer
from trainer.schedule import build_schedule, steps_per_epoch

WARMUP_COSINE = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=True, end=2, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=2, eta_min_ratio=0.01),
    dict(type="CosineAnnealingMomentum", eta_min=0.95, by_epoch=False),
]


def adamw(groups: list[dict]) -> torch.optim.AdamW:
    return torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(2))], **g} for g in groups])


def schedule_for(optimizer, entries=WARMUP_COSINE, spe=7, train=None):
    return build_schedule(
        entries, param_groups=optimizer.param_groups, steps_per_epoch=spe, train_cfg=train or {"epochs": 10}
    )


def test_values_start_from_each_groups_own_lr_and_keep_the_multipliers():
    opt = adamw([{"lr": 1e-3}, {"lr": 1e-4}])
    schedule = schedule_for(opt, entries=WARMUP_COSINE[:1] + [dict(type="CosineAnnealingLR", begin=2)])
    for step in (0, 5, 14, 40, 69):
        lrs = [v["lr"] for v in schedule.values(step)]
        assert lrs[1] == pytest.approx(lrs[0] * 0.1, rel=1e-12)
    assert schedule.values(0)[0]["lr"] == pytest.approx(1e-6)


def test_apply_writes_lr_and_momentum_into_adam_betas_keeping_beta2():
    opt = adamw([{"lr": 1e-3, "betas": (0.9, 0.999)}, {"lr": 5e-4, "betas": (0.8, 0.98)}])
    schedule = schedule_for(opt)
    schedule.apply(opt, 30)
    values = schedule.values(30)
    for group, value, beta2 in zip(opt.param_groups, values, (0.999, 0.98), strict=True):
        assert group["lr"] == value["lr"]
        assert group["betas"] == (value["momentum"], beta2)
        assert "momentum" not in group


def test_apply_writes_momentum_for_sgd():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    schedule = schedule_for(opt)
    schedule.apply(opt, 69)
    assert opt.param_groups[0]["momentum"] == schedule.values(69)[0]["momentum"]
    assert 0.9 < opt.param_groups[0]["momentum"] <= 0.95


def test_resuming_at_any_step_gives_the_same_values_as_running_from_zero():
    groups = [{"lr": 1e-3, "betas": (0.9, 0.999)}, {"lr": 3e-4, "betas": (0.9, 0.999)}]
    running = adamw(groups)
    first = schedule_for(running)
    first.apply(running, 0)
    for step in range(1, 70):
        first.apply(running, step)
        if step in (1, 13, 14, 42, 69):
            resumed = adamw(groups)
            schedule_for(resumed).apply(resumed, step)
            for a, b in zip(running.param_groups, resumed.param_groups, strict=True):
                assert (a["lr"], a["betas"]) == (b["lr"], b["betas"])


def test_steps_past_the_end_of_training_hold_the_last_value_and_negative_steps_fail():
    opt = adamw([{"lr": 1e-3}])
    schedule = schedule_for(opt)
    assert schedule.total_steps == 70
    assert schedule.values(70) == schedule.values(69) == schedule.values(10_000)
    with pytest.raises(ValueError):
        schedule.values(-1)


def test_no_schedule_keeps_the_optimizer_values_constant():
    opt = adamw([{"lr": 1e-3}, {"lr": 2e-3}])
    schedule = schedule_for(opt, entries=[])
    assert schedule.params == ["lr"]
    assert schedule.values(0) == schedule.values(69) == [{"lr": 1e-3}, {"lr": 2e-3}]


def test_schedule_applies_to_real_layer_decay_groups_of_a_timm_model():
    model = build_model({"name": "test_vit", "num_classes": 10})
    opt = build_optimizer(
        model,
        {
            "type": "AdamW",
            "lr": 1e-3,
            "weight_decay": 0.05,
            "constructor": {"type": "LayerDecay", "decay_rate": 0.7},
        },
        {"norm_decay_mult": 0.0},
    )
    initial = [g["lr"] for g in opt.param_groups]
    assert len(set(initial)) > 2
    schedule = schedule_for(opt)
    schedule.apply(opt, 40)
    ratio = [g["lr"] / lr0 for g, lr0 in zip(opt.param_groups, initial, strict=True)]
    assert max(ratio) == pytest.approx(min(ratio), rel=1e-12)
    assert schedule.group_names == [g["name"] for g in opt.param_groups]


def test_momentum_schedule_on_an_optimizer_without_momentum_is_a_recipe_error():
    opt = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(RecipeError) as info:
        schedule_for(opt, entries=[dict(type="LinearLR", end=2), dict(type="LinearMomentum", end=2)])
    assert info.value.key == "schedule[1].type"
    assert "neither `momentum` nor `betas`" in info.value.message


def test_generic_scheduler_on_a_missing_hyperparameter_is_a_recipe_error():
    opt = adamw([{"lr": 1e-3}])
    entry = dict(type="LinearParamScheduler", param_name="weight_decai", end=2)
    with pytest.raises(RecipeError) as info:
        schedule_for(opt, entries=[entry])
    assert info.value.key == "schedule[0].type" and "weight_decay" in info.value.message


def test_reduce_on_plateau_cuts_after_patience_and_resume_replays_the_reports():
    opt = adamw([{"lr": 1e-3}, {"lr": 1e-4}])
    entries = [dict(type="ReduceOnPlateauLR", patience=1, factor=0.5, min_value=6e-5)]
    schedule = schedule_for(opt, entries=entries)
    assert schedule.monitored_metrics == {"loss"}
    for epoch, loss in enumerate([1.0, 1.0, 1.0, 1.0, 1.0], start=1):
        schedule.report_metric("accuracy", 0.5, epoch * 7)  # not monitored: ignored
        schedule.report_metric("loss", loss, epoch * 7)
    # epoch 1 sets the best; epochs 2 and 3 are bad; patience 1 -> cut when epoch 3 is reported (step 21)
    assert [v["lr"] for v in schedule.values(20)] == [1e-3, 1e-4]
    assert [v["lr"] for v in schedule.values(21)] == pytest.approx([5e-4, 6e-5])
    assert [v["lr"] for v in schedule.values(69)] == pytest.approx([2.5e-4, 6e-5])
    resumed = schedule_for(adamw([{"lr": 1e-3}, {"lr": 1e-4}]), entries=entries)
    resumed.load_state_dict(schedule.state_dict())
    assert [resumed.values(s) for s in range(70)] == [schedule.values(s) for s in range(70)]


def test_reduction_is_carried_through_a_later_chained_scheduler():
    opt = adamw([{"lr": 1e-3}])
    entries = [
        dict(type="ReduceOnPlateauLR", patience=0, factor=0.5),
        dict(type="LinearLR", start_factor=0.5, by_epoch=False, begin=20, end=41),
    ]
    schedule = schedule_for(opt, entries=entries)
    schedule.report_metric("loss", 1.0, 7)
    schedule.report_metric("loss", 2.0, 14)  # worse: halve from step 14
    assert schedule.values(14)[0]["lr"] == pytest.approx(5e-4)
    assert schedule.values(20)[0]["lr"] == pytest.approx(2.5e-4)
    assert schedule.values(40)[0]["lr"] == pytest.approx(5e-4)


def test_steps_per_epoch_counts_whole_global_batches_and_without_drop_last_one_shorter_step():
    assert steps_per_epoch(50_000, 64, 1, drop_last=False) == 782
    assert steps_per_epoch(50_000, 64, 4, drop_last=False) == 196
    assert steps_per_epoch(50_000, 64, 4, num_processes=8, drop_last=False) == 25
    assert steps_per_epoch(10, 64, 4, drop_last=False) == 1
    assert steps_per_epoch(50_000, 64, 1) == 781  # the default drops the last short batch, as the loader does
    assert steps_per_epoch(50_000, 64, 4, num_processes=8) == 24  # 832 rows short of a global batch of 2048
    assert steps_per_epoch(50_000, 64, 4) == 195  # the same with one process: 80 rows dropped, not 16
    with pytest.raises(ValueError):
        steps_per_epoch(0, 64, 1)


def test_a_million_step_curve_for_a_dozen_groups_is_built_and_applied_whole():
    # How fast this builds and applies is scripts/benchmark.py's business (docs/benchmarks.md, "Setup
    # costs"): a time limit here would fail on a busy machine and prove nothing on a fast one.
    opt = adamw([{"lr": 1e-3 * 0.7**i} for i in range(12)])
    schedule = schedule_for(opt, spe=10_000, train={"epochs": 100})
    assert schedule.total_steps == 1_000_000
    curves = schedule.curve("lr")
    assert curves.shape == (12, 1_000_000)
    curve = curves[0]
    assert curve[0] == pytest.approx(1e-6) and curve.argmax() == 20_000 - 1
    assert np.all(curve[19_999:30_000] == curve[19_999])  # held bit for bit until the first epoch step
    assert np.all(np.diff(curve[20_000:]) <= 0)
    np.testing.assert_allclose(curves[11], curve * 0.7**11, rtol=1e-12)  # every group keeps its multiplier
    for step in range(0, 1_000_000, 1000):
        schedule.apply(opt, step)
        assert [g["lr"] for g in opt.param_groups] == curves[:, step].tolist(), step
