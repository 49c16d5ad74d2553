"""End-to-end training runs of scripts/train.py on a tiny timm model and a tiny real `datasets` dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from runs import SGD, assert_same_weights, make_dataset, recipe_text, records, run, train_run, weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


def test_training_writes_run_directory_and_loss_goes_down(tmp_path, dataset):
    out = train_run(
        tmp_path,
        dataset,
        "basic",
        train="epochs = 6\nlog_every = 1",
        optimizer='type = "AdamW"\nlr = 3e-3\nweight_decay = 0.0',
    )
    recs = [r for r in records(out) if "loss" in r]
    assert [r["step"] for r in recs] == list(range(1, 6 * 8 + 1))
    assert {"step", "epoch", "loss", "lr", "samples_per_sec"} <= recs[0].keys()
    first, last = sum(r["loss"] for r in recs[:8]) / 8, sum(r["loss"] for r in recs[-8:]) / 8
    assert last < 0.5 * first
    evals = [r for r in records(out) if "eval_top1" in r]
    assert len(evals) == 6
    assert {"eval_loss", "eval_top1", "eval_top5"} <= evals[-1].keys()
    assert evals[-1]["eval_top1"] >= 75.0
    assert evals[-1]["eval_top5"] == 100.0  # 4 classes: every label is in the top 5
    assert (out / "recipe.toml").is_file() and (out / "run_info.json").is_file()
    import timm

    model = timm.create_model("test_vit", num_classes=4, img_size=16, patch_size=4)
    assert weights(out).keys() == model.state_dict().keys()


def test_accumulation_trains_like_the_large_batch(tmp_path, dataset):
    # 80 samples, no drop_last: batch 32 gives batches 32, 32, 16; batch 8 x accumulate 4 gives windows of
    # 4, 4 and 2 micro-batches, the short one rescaled to a mean over its 16 samples.
    data_b = make_dataset(tmp_path / "d80", n_train=80)
    # SGD, not Adam: Adam divides by sqrt(v) and blows up round-off on zero-gradient params (a key bias).
    common = {"train": "epochs = 2\nlog_every = 1", "checkpoint": None, "optimizer": SGD}
    big = train_run(
        tmp_path,
        data_b,
        "big",
        **common,
        data=f'path = "{data_b}"\nbatch_size = 32\nnum_workers = 0\ndrop_last = false\n'
        "augment = { no_aug = true }",
    )
    acc = train_run(
        tmp_path,
        data_b,
        "acc",
        **{**common, "train": "epochs = 2\nlog_every = 1\naccumulate = 4"},
        data=f'path = "{data_b}"\nbatch_size = 8\nnum_workers = 0\ndrop_last = false\n'
        "augment = { no_aug = true }",
    )
    assert [r["step"] for r in records(big) if "loss" in r] == [
        r["step"] for r in records(acc) if "loss" in r
    ]
    assert_same_weights(big, acc, atol=1e-5)


def test_resume_from_a_mid_epoch_checkpoint_ends_with_the_same_weights(tmp_path, dataset):
    sections = {
        "train": "max_steps = 12\nlog_every = 1",
        "checkpoint": "interval = 5\nmax_keep = -1",
        "eval": "interval = 6",
    }
    full = train_run(tmp_path, dataset, "full", **sections)
    ckpts = sorted(p.name for p in (full / "checkpoints").iterdir())
    assert ckpts == ["step_00000005", "step_00000010", "step_00000012"]
    # A second run starts from the step-5 checkpoint (mid-epoch: 8 steps per epoch) in a fresh directory.
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000005", resumed_dir / "checkpoints" / "step_00000005")
    out = train_run(tmp_path, dataset, "resumed", "--resume", "auto", **sections)
    assert out == resumed_dir
    assert [r["step"] for r in records(out) if "loss" in r] == list(range(6, 13))
    assert_same_weights(full, out, atol=0)


def test_resume_with_an_edited_recipe_follows_the_new_recipe_and_says_so(tmp_path, dataset):
    out = train_run(tmp_path, dataset, "edit", train="epochs = 1\nlog_every = 1")
    recipe = tmp_path / "edit.toml"
    recipe.write_text(
        recipe_text(
            dataset,
            out,
            train="epochs = 2\nlog_every = 1",
            optimizer='type = "AdamW"\nlr = 5e-4\nweight_decay = 0.05',
        )
    )
    proc = run(recipe, "--resume", "auto")
    assert "recipe changed" in proc.stdout + proc.stderr
    assert "optimizer.lr: 0.001 -> 0.0005" in proc.stdout + proc.stderr
    recs = [r for r in records(out) if "loss" in r]
    assert recs[-1]["step"] == 16
    assert recs[-1]["lr"] == pytest.approx(5e-4)


def test_two_processes_train_and_evaluate_like_one_process_with_the_double_batch(tmp_path, dataset):
    # 16 eval samples in batches of 3 do not split evenly over 2 processes: Accelerate pads the last batch,
    # and gather_for_metrics must drop the padding for the metrics to equal the single process's.
    common = {"train": "epochs = 1\nlog_every = 1", "checkpoint": None, "optimizer": SGD}
    data = f'path = "{dataset}"\nnum_workers = 0\naugment = {{ no_aug = true }}\neval_batch_size = 3'
    single = train_run(tmp_path, dataset, "single", **common, data=f"{data}\nbatch_size = 16")
    double = train_run(tmp_path, dataset, "double", nproc=2, **common, data=f"{data}\nbatch_size = 8")
    assert len([r for r in records(double) if "loss" in r]) == 4
    assert_same_weights(single, double, atol=1e-5)
    eval_single = [r for r in records(single) if "eval_loss" in r][-1]
    eval_double = [r for r in records(double) if "eval_loss" in r][-1]
    assert eval_double["eval_top1"] == eval_single["eval_top1"]
    assert eval_double["eval_loss"] == pytest.approx(eval_single["eval_loss"], rel=1e-5)


def test_bf16_autocast_trains_on_cpu(tmp_path, dataset):
    out = train_run(tmp_path, dataset, "bf16", train='epochs = 1\nlog_every = 1\nprecision = "bf16"')
    recs = [r for r in records(out) if "loss" in r]
    assert len(recs) == 8 and all(r["loss"] == r["loss"] for r in recs)


def test_clip_grad_logs_the_norm_and_changes_the_update(tmp_path, dataset):
    common = {
        "train": "max_steps = 2\nlog_every = 1",
        "checkpoint": None,
        "eval": "enabled = false",
        "optimizer": 'type = "SGD"\nlr = 0.1',
    }
    plain = train_run(tmp_path, dataset, "noclip", **common)
    clipped = train_run(tmp_path, dataset, "clip", **common, clip_grad="max_norm = 1e-3")
    recs = [r for r in records(clipped) if "loss" in r]
    assert all(r["grad_norm"] > 1e-3 for r in recs)
    assert "grad_norm" not in records(plain)[0]
    # With plain SGD the first update is -lr * g, clipped: -lr * g * max_norm / |g|.
    start = train_run(
        tmp_path,
        dataset,
        "start",
        **{**common, "train": "max_steps = 1\nlog_every = 1", "optimizer": 'type = "SGD"\nlr = 0.0'},
    )
    w0 = weights(start)
    dp = [weights(plain)[k] - w0[k] for k in w0]
    dc = [weights(clipped)[k] - w0[k] for k in w0]
    assert not all(torch.allclose(a, b) for a, b in zip(dp, dc, strict=True))


def test_clip_grad_value_clamps_every_gradient():
    from accelerate import Accelerator

    from trainer.loop import clip_gradients as _clip

    model = torch.nn.Linear(4, 2)
    model(torch.randn(8, 4) * 100).sum().backward()
    _clip(Accelerator(cpu=True), model, {"type": "value", "clip_value": 0.01})
    assert all(p.grad.abs().max() <= 0.01 + 1e-9 for p in model.parameters())
    model.zero_grad()
    model(torch.randn(8, 4) * 100).sum().backward()
    norm = _clip(Accelerator(cpu=True), model, {"type": "norm", "max_norm": 0.5, "norm_type": 2.0})
    assert norm > 0.5
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert total == pytest.approx(0.5, rel=1e-4)


def test_tensorboard_tracker_writes_events_offline(tmp_path, dataset):
    out = train_run(
        tmp_path,
        dataset,
        "tb",
        train='max_steps = 2\nlog_every = 1\nlog_with = ["tensorboard"]',
        checkpoint=None,
        eval="enabled = false",
    )
    assert list(out.rglob("events.out.tfevents.*"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast with loss scaling needs a CUDA GPU")
def test_fp16_with_loss_scaling_trains_on_gpu(tmp_path, dataset):
    out = train_run(tmp_path, dataset, "fp16", train='epochs = 1\nlog_every = 1\nprecision = "fp16"')
    assert all(r["loss"] == r["loss"] for r in records(out) if "loss" in r)
