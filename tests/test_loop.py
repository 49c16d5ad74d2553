"""End-to-end training runs of scripts/train.py on a tiny timm model and a tiny real `datasets` dataset.

What a run computes and writes is checked on runs of the script's main in the test process (call_main: the
same code, without a new interpreter's start-up); resuming, several processes and autocast (a recipe hook)
run as real processes."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from runs import (
    SGD,
    assert_bit_equal,
    assert_close_weights,
    call_main,
    make_dataset,
    recipe_text,
    records,
    train_env,
    train_in_process,
    train_run,
    weights,
)
from trainer.run.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


def test_training_writes_run_directory_and_loss_goes_down(tmp_path, dataset, capfd):
    out = train_in_process(
        tmp_path,
        dataset,
        "basic",
        capfd=capfd,
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
    assert evals[-1]["eval_top1"] >= 75.0  # top-5 of 4 classes is always 100: see the 10-class test below
    assert (out / "recipe.toml").is_file() and (out / "run_info.json").is_file()
    from trainer.files import umask_mode

    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert "model.safetensors" in modes and "checkpoints/step_00000048/model.safetensors" in modes
    assert {k: m for k, m in modes.items() if m != umask_mode()} == {}  # safetensors' 0600 shared too
    import timm

    model = timm.create_model("test_vit", num_classes=4, img_size=16, patch_size=4)
    assert weights(out).keys() == model.state_dict().keys()


def test_eval_loss_top1_and_top5_are_those_of_the_final_weights(tmp_path, capfd):
    """10 classes (top-5 of 4 would always be 100), 2 steps: the eval record equals loss and accuracies
    recomputed here from model.safetensors on the same eval batches, by rank rather than topk."""
    import timm
    import torch.nn.functional as F

    from trainer.data import build_dataloaders
    from trainer.data.transforms import batch_normalizer
    from trainer.recipe.load import load_recipe

    data = make_dataset(tmp_path / "d10", n_train=40, n_eval=40, classes=10)
    model_section = 'name = "test_vit"\nnum_classes = 10\nimg_size = 16\npatch_size = 4'
    out = train_in_process(
        tmp_path,
        data,
        "ten",
        capfd=capfd,
        model=model_section,
        train="max_steps = 2\nlog_every = 1",
        checkpoint=None,
    )
    (logged,) = [r for r in records(out) if "eval_loss" in r]
    model = timm.create_model("test_vit", num_classes=10, img_size=16, patch_size=4)
    model.load_state_dict(weights(out))
    model.eval()
    _, eval_dl = build_dataloaders(load_recipe(tmp_path / "ten.toml").cfg["data"], model, seed=0)
    normalize = batch_normalizer(eval_dl, torch.device("cpu"))  # uint8 batches, as the loop normalizes them
    with torch.no_grad():
        batches = [(model(normalize(images)), labels) for images, labels in eval_dl]
    logits, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert labels.tolist() == [i % 10 for i in range(40)]
    rank = (logits > logits.gather(1, labels[:, None])).sum(dim=1)  # classes scored above the label
    top1, top5 = 100.0 * int((rank == 0).sum()) / 40, 100.0 * int((rank < 5).sum()) / 40
    loss = F.cross_entropy(logits.double(), labels).item()
    assert logged["eval_top1"] == top1 and logged["eval_top5"] == top5
    assert logged["eval_loss"] == pytest.approx(loss, rel=1e-6)  # fp32 logits, summed in another order
    assert 0 < top1 < top5 < 100  # neither accuracy is trivially 0 or 100 here


def test_accumulation_trains_like_the_large_batch(tmp_path, dataset, capfd):
    # 80 samples, no drop_last: batch 32 gives batches 32, 32, 16; batch 8 x accumulate 4 gives windows of
    # 4, 4 and 2 micro-batches, the short one rescaled to a mean over its 16 samples.
    data_b = make_dataset(tmp_path / "d80", n_train=80)
    # SGD, not Adam: Adam divides by sqrt(v) and blows up round-off on zero-gradient params (a key bias).
    common = {"train": "epochs = 2\nlog_every = 1", "checkpoint": None, "optimizer": SGD}
    big = train_in_process(
        tmp_path,
        data_b,
        "big",
        capfd=capfd,
        **common,
        data=f'path = "{data_b}"\nbatch_size = 32\nnum_workers = 0\ndrop_last = false\n'
        "augment = { no_aug = true }",
    )
    acc = train_in_process(
        tmp_path,
        data_b,
        "acc",
        capfd=capfd,
        **{**common, "train": "epochs = 2\nlog_every = 1\naccumulate = 4"},
        data=f'path = "{data_b}"\nbatch_size = 8\nnum_workers = 0\ndrop_last = false\n'
        "augment = { no_aug = true }",
    )
    big_losses = [(r["step"], r["loss"]) for r in records(big) if "loss" in r]
    acc_losses = [(r["step"], r["loss"]) for r in records(acc) if "loss" in r]
    assert [s for s, _ in big_losses] == [s for s, _ in acc_losses] == list(range(1, 7))
    # Not bit-equal, legitimately: the accumulated gradient is a sum of 4 (or 2) micro-batch means, the large
    # batch's one mean over all its samples; the same numbers in another summation order.
    assert [loss for _, loss in acc_losses] == pytest.approx([loss for _, loss in big_losses], rel=1e-5)
    assert_close_weights(big, acc, atol=1e-5, rtol=1e-5)


def test_resume_from_a_mid_epoch_checkpoint_ends_with_the_same_weights(tmp_path, dataset, capfd):
    sections = {
        "train": "max_steps = 12\nlog_every = 1",
        "checkpoint": "interval = 5\nmax_keep = -1",
        "eval": "interval = 6",
    }
    full = train_in_process(tmp_path, dataset, "full", capfd=capfd, **sections)
    ckpts = sorted(p.name for p in (full / "checkpoints").iterdir())
    assert ckpts == ["step_00000005", "step_00000010", "step_00000012"]
    # A second run starts from the step-5 checkpoint (mid-epoch: 8 steps per epoch) in a fresh directory.
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000005", resumed_dir / "checkpoints" / "step_00000005")
    out = train_run(tmp_path, dataset, "resumed", "--resume", "auto", **sections)  # a new process
    assert out == resumed_dir
    assert [r["step"] for r in records(out) if "loss" in r] == list(range(6, 13))
    assert_bit_equal(full, out, since_step=5)  # every record from step 6 on, and every weight


def test_resume_with_an_edited_recipe_follows_the_new_recipe_and_says_so(tmp_path, dataset, capfd):
    out = train_in_process(tmp_path, dataset, "edit", capfd=capfd, train="epochs = 1\nlog_every = 1")
    recipe = tmp_path / "edit.toml"
    recipe.write_text(
        recipe_text(
            dataset,
            out,
            train="epochs = 2\nlog_every = 1",
            optimizer='type = "AdamW"\nlr = 5e-4\nweight_decay = 0.05',
        )
    )
    code, stdout, stderr = call_main("train.py", [recipe, "--resume", "auto"], capfd)
    assert code == 0, stderr[-3000:]
    assert "recipe changed" in stdout + stderr
    assert "optimizer.lr: 0.001 -> 0.0005" in stdout + stderr
    recs = [r for r in records(out) if "loss" in r]
    assert recs[-1]["step"] == 16
    assert recs[-1]["lr"] == pytest.approx(5e-4)


def test_two_processes_train_and_evaluate_like_one_process_with_the_double_batch(tmp_path, dataset, capfd):
    # 16 eval samples in batches of 3 do not split evenly over 2 processes: Accelerate pads the last batch,
    # and gather_for_metrics must drop the padding for the metrics to equal the single process's.
    common = {"train": "epochs = 1\nlog_every = 1", "checkpoint": None, "optimizer": SGD}
    data = f'path = "{dataset}"\nnum_workers = 0\naugment = {{ no_aug = true }}\neval_batch_size = 3'
    single = train_in_process(
        tmp_path, dataset, "single", capfd=capfd, **common, data=f"{data}\nbatch_size = 16"
    )
    double = train_run(tmp_path, dataset, "double", nproc=2, **common, data=f"{data}\nbatch_size = 8")
    single_losses = [r["loss"] for r in records(single) if "loss" in r]
    double_losses = [r["loss"] for r in records(double) if "loss" in r]
    assert len(single_losses) == len(double_losses) == 4
    # Not bit-equal, legitimately: DDP averages the two processes' mean gradients (an all-reduce), one process
    # takes one mean over the 16 samples; the same numbers in another summation order.
    assert double_losses == pytest.approx(single_losses, rel=1e-5)
    assert_close_weights(single, double, atol=1e-5, rtol=1e-5)
    eval_single = [r for r in records(single) if "eval_loss" in r][-1]
    eval_double = [r for r in records(double) if "eval_loss" in r][-1]
    assert eval_double["eval_top1"] == eval_single["eval_top1"]
    # The counts must match exactly (padding dropped); the loss only to float tolerance (weights as above).
    assert eval_double["eval_loss"] == pytest.approx(eval_single["eval_loss"], rel=1e-5)


def dtypes_run(tmp_path: Path, dataset: Path, name: str, precision: str, *, gpu: bool = False) -> tuple:
    """One epoch at `precision` with the record_dtypes hook: (out, the set of recorded forward lines)."""
    seen = tmp_path / f"{name}_dtypes"
    seen.mkdir()
    out = train_run(
        tmp_path,
        dataset,
        name,
        env=train_env(gpu=gpu, TRAINER_TEST_DTYPE_DIR=str(seen)),
        imports=("record_dtypes",),
        train=f'epochs = 1\nlog_every = 1\nprecision = "{precision}"',
    )
    lines = {line for f in seen.iterdir() for line in f.read_text().splitlines()}
    return out, lines


def test_bf16_autocast_computes_in_bf16_on_cpu(tmp_path, dataset):
    out, lines = dtypes_run(tmp_path, dataset, "bf16", "bf16")
    # The Linear layers (attention, MLP, head) ran under CPU autocast and returned bf16, in training and in
    # evaluation; the model (the outer module, outside Accelerate's autocast wrapper) hands the loss fp32
    # logits (Accelerate's convert_outputs_to_fp32).
    assert {"Linear train cpu bfloat16 bfloat16", "Linear eval cpu bfloat16 bfloat16"} <= lines
    assert not any(line.startswith("Linear") and "float32" in line.split()[3] for line in lines), lines
    assert {"VisionTransformer train cpu float32 off", "VisionTransformer eval cpu float32 off"} <= lines
    recs = [r for r in records(out) if "loss" in r]
    assert len(recs) == 8 and all(math.isfinite(r["loss"]) for r in recs)
    assert {t.dtype for t in weights(out).values()} == {torch.float32}  # autocast, not a bf16 model


def test_clip_grad_logs_the_norm_before_clipping_and_scales_the_update_to_max_norm(tmp_path, dataset, capfd):
    # One plain-SGD step (no momentum, no weight decay): the update is -lr * g, clipped -lr * g * c with
    # c = max_norm / (|g| + 1e-6) (torch's clip_grad_norm_). Three runs from the same initial weights and
    # batch: lr 0 (w0), unclipped (g = (w0 - w) / lr) and clipped.
    common = {"train": "max_steps = 1\nlog_every = 1", "checkpoint": None, "eval": "enabled = false"}
    lr, max_norm = 1.0, 0.5
    start = train_in_process(
        tmp_path, dataset, "start", capfd=capfd, **common, optimizer='type = "SGD"\nlr = 0.0'
    )
    plain = train_in_process(
        tmp_path, dataset, "noclip", capfd=capfd, **common, optimizer=f'type = "SGD"\nlr = {lr}'
    )
    clipped = train_in_process(
        tmp_path,
        dataset,
        "clip",
        capfd=capfd,
        **common,
        optimizer=f'type = "SGD"\nlr = {lr}',
        clip_grad=f"max_norm = {max_norm}",
    )
    w0, wp, wc = weights(start), weights(plain), weights(clipped)
    grads = {k: (w0[k].double() - wp[k].double()) / lr for k in w0}
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    (record,) = [r for r in records(clipped) if "loss" in r]
    assert "grad_norm" not in records(plain)[0]  # logged only when clipping
    # Approximate, legitimately: g is recovered from fp32 weights before and after the update.
    assert record["grad_norm"] == pytest.approx(float(norm), rel=1e-4)  # the norm before clipping
    assert record["grad_norm"] > 2 * max_norm  # so clipping did scale the update (by c < 0.5)
    c = max_norm / (record["grad_norm"] + 1e-6)
    for k in w0:
        torch.testing.assert_close(wc[k].double() - w0[k].double(), -lr * c * grads[k], atol=2e-7, rtol=1e-4)
    update = torch.stack([torch.linalg.vector_norm(wc[k].double() - w0[k].double()) for k in w0])
    assert float(torch.linalg.vector_norm(update)) == pytest.approx(lr * max_norm, rel=1e-4)


def test_clip_grad_value_clamps_every_gradient():
    from accelerate import Accelerator

    from trainer.run.loop import clip_gradients as _clip

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


def test_tensorboard_tracker_writes_events_offline(tmp_path, dataset, capfd):
    out = train_in_process(
        tmp_path,
        dataset,
        "tb",
        capfd=capfd,
        train='max_steps = 2\nlog_every = 1\nlog_with = ["tensorboard"]',
        checkpoint=None,
        eval="enabled = false",
    )
    assert list(out.rglob("events.out.tfevents.*"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_autocast_with_loss_scaling_on_gpu(tmp_path, dataset):
    out, lines = dtypes_run(tmp_path, dataset, "fp16", "fp16", gpu=True)
    assert {"Linear train cuda float16 float16", "Linear eval cuda float16 float16"} <= lines
    assert "VisionTransformer train cuda float32 off" in lines
    recs = [r for r in records(out) if "loss" in r]
    assert len(recs) == 8 and all(math.isfinite(r["loss"]) for r in recs)
    # Dynamic loss scaling: Accelerate's GradScaler, its state in every checkpoint (scaler.pt).
    (checkpoint,) = list_checkpoints(out / "checkpoints")
    scaler = torch.load(checkpoint / "scaler.pt", weights_only=True)
    assert math.isfinite(scaler["scale"]) and scaler["scale"] >= 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_autocast_computes_in_bf16_on_gpu(tmp_path, dataset):
    out, lines = dtypes_run(tmp_path, dataset, "bf16_gpu", "bf16", gpu=True)
    assert {"Linear train cuda bfloat16 bfloat16", "Linear eval cuda bfloat16 bfloat16"} <= lines
    recs = [r for r in records(out) if "loss" in r]
    assert len(recs) == 8 and all(math.isfinite(r["loss"]) for r in recs)
    (checkpoint,) = list_checkpoints(out / "checkpoints")
    assert not (checkpoint / "scaler.pt").exists()  # bf16 needs no loss scaling
