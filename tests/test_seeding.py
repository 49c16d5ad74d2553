"""Randomness is a function of (seed, epoch, sample) and (seed, step): resumed runs, any number of data
workers and any number of processes train as the uninterrupted run, with the default loader settings."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from runs import ROOT, call_main, records, train_command, train_env, weights
from trainer.data.seeding import SeededTransform, mix_seed, preserved_rngs, sample_seed, seed_rngs, step_seed
from trainer.errors import EXIT_PREEMPTED
from trainer.run.checkpoint import list_checkpoints

HOOKS = ROOT / "tests" / "fixtures" / "hooks"


def test_seeds_differ_across_seed_epoch_index_and_step():
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 3 * 3 * 50
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    assert step_seed(0, 5) != sample_seed(0, 0, 5) and step_seed(1, 5) != step_seed(0, 5)
    assert all(0 <= s < 2**64 for s in seeds) and mix_seed(1, 2) != mix_seed(2, 1)


def test_seed_rngs_makes_python_numpy_and_torch_repeat():
    seed_rngs(sample_seed(0, 0, 7))
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_rngs(sample_seed(0, 0, 7))
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_preserved_rngs_puts_every_state_back():
    torch.manual_seed(1)
    expected = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    with preserved_rngs():
        seed_rngs(123)
        random.random(), np.random.rand(), torch.rand(5)
    assert random.getstate() == expected[0]
    assert np.array_equal(np.random.get_state()[1], expected[1])
    assert torch.equal(torch.get_rng_state(), expected[2])


@pytest.fixture(scope="module")
def augmented(tmp_path_factory):
    """The quickstart's train pipeline (random resized crop) on the first 48 digits."""
    import timm

    from trainer.data import load_splits
    from trainer.data.transforms import build_transforms
    from trainer.recipe.load import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "quickstart.toml", [f'data.path="{ROOT / "data" / "digits"}"'])
    cfg = recipe.cfg["data"]
    train, _ = load_splits(cfg, seed=0, num_classes=10)
    model = timm.create_model("resnet10t", num_classes=10)
    train_tf, _ = build_transforms(model, image_size=cfg["image_size"], augment=cfg["augment"])
    return train.select(range(48)), train_tf


def test_a_samples_augmentation_depends_on_seed_epoch_and_index_only(augmented):
    dataset, transform = augmented
    seeded = SeededTransform(dataset, transform, seed=0)
    alone = {i: seeded.__getitems__([i])[0]["pixel_values"] for i in (3, 5, 9)}
    together = seeded.__getitems__([9, 5, 3])
    for example, i in zip(together, (9, 5, 3), strict=True):
        assert torch.equal(example["pixel_values"], alone[i])
    seeded.set_epoch(1)
    assert not torch.equal(seeded[3]["pixel_values"], alone[3])
    assert not torch.equal(SeededTransform(dataset, transform, seed=1)[3]["pixel_values"], alone[3])
    assert seeded[3]["labels"] == dataset[3]["label"]


def test_loading_in_the_main_process_leaves_the_global_rngs_alone(augmented):
    dataset, transform = augmented
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    SeededTransform(dataset, transform, seed=0).__getitems__([0, 1, 2])
    assert torch.equal(torch.rand(4), expected)


class EpochPermutation(torch.utils.data.Sampler):
    """A shuffled order that depends on the epoch alone (the loop's seedable sampler, without Accelerate)."""

    def __init__(self, size: int) -> None:
        self.size, self.epoch = size, 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(torch.randperm(self.size, generator=torch.Generator().manual_seed(self.epoch)).tolist())


def epochs_of_batches(dataset, transform, num_workers: int, epochs: int = 2) -> list[torch.Tensor]:
    from trainer.data.transforms import collate_image_batch

    seeded = SeededTransform(dataset, transform, seed=0)
    sampler = EpochPermutation(len(seeded))
    loader = DataLoader(
        seeded,
        batch_size=8,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_image_batch,
    )
    out = []
    for epoch in range(epochs):
        seeded.set_epoch(epoch)
        sampler.epoch = epoch
        out.extend(pixels for pixels, _ in loader)
    return out


def test_persistent_workers_augment_as_the_main_process_does_epoch_after_epoch(augmented):
    dataset, transform = augmented
    in_main = epochs_of_batches(dataset, transform, 0)
    for workers in (1, 2):
        batches = epochs_of_batches(dataset, transform, workers)
        assert len(batches) == len(in_main) == 12
        assert all(torch.equal(a, b) for a, b in zip(in_main, batches, strict=True)), workers
    assert not torch.equal(in_main[0], in_main[6])  # epoch 1 is not epoch 0 again


def quickstart(tmp_path: Path, name: str, *overrides: str, recipe_name: str = "quickstart") -> Path:
    """recipes/quickstart.toml (or another shipped recipe on the digits), two epochs, fp32, with the stop
    hook importable (inactive unless asked)."""
    recipe = tmp_path / f"{name}.toml"
    text = (ROOT / "recipes" / f"{recipe_name}.toml").read_text()
    recipe.write_text(text.replace('base = "', f'base = "{ROOT / "recipes"}/'))
    sets = [
        f'output_dir="{tmp_path / name}"',
        f'data.path="{ROOT / "data" / "digits"}"',
        "train.epochs=2",
        'train.precision="no"',
        'imports=["sigterm_at_step"]',
        *overrides,
    ]
    return recipe, ["--set", *sets]


def hook_env(step: int | None = None) -> dict[str, str]:
    env = {**train_env(), "PYTHONPATH": os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")])}
    if step is not None:
        env["TRAINER_TEST_SIGTERM_AT_STEP"] = str(step)
    return env


def train_quickstart(
    tmp_path: Path,
    name: str,
    *overrides: str,
    nproc: int = 1,
    stop_at: int | None = None,
    recipe_name: str = "quickstart",
):
    recipe, args = quickstart(tmp_path, name, *overrides, recipe_name=recipe_name)
    proc = subprocess.run(
        train_command(recipe, *args, nproc=nproc),
        env=hook_env(stop_at),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, recipe, args


def comparable(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "samples_per_sec"} for r in records(out)]


def assert_bit_equal(a: Path, b: Path) -> None:
    assert comparable(a) == comparable(b)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []


STOCHASTIC_DEPTH = ("data.num_workers=1", "model.drop_path_rate=0.2")
"""One persistent worker (what this 2-core machine's default gives one process), and drop-path: the model's
own randomness, drawn from the main process's RNG that checkpoints restore and data loading never touches."""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The quickstart (defaults: workers on, persistent, random crop) run for 2 epochs without a stop."""
    from trainer.data import loader_options

    tmp = tmp_path_factory.mktemp("uninterrupted")
    proc, _, _ = train_quickstart(tmp, "ref", *STOCHASTIC_DEPTH)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert loader_options({"path": "x", "batch_size": 1, "num_workers": 1})["persistent_workers"] is True
    return tmp / "ref"


@pytest.mark.slow
def test_sigterm_at_an_epoch_boundary_then_mid_epoch_and_resume_auto_train_bit_for_bit_as_uninterrupted(
    tmp_path, uninterrupted
):
    """Stopped after step 22 (the end of epoch 1), resumed and stopped again after step 33 (mid-epoch 2, its
    data workers' iterator half consumed), resumed to the end: the uninterrupted run's records and weights."""
    proc, recipe, args = train_quickstart(tmp_path, "run", *STOCHASTIC_DEPTH, stop_at=22)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    assert list_checkpoints(tmp_path / "run" / "checkpoints")[-1].name == "step_00000022"
    resume = train_command(recipe, *args, "--resume", "auto")
    again = subprocess.run(resume, env=hook_env(33), capture_output=True, text=True)
    assert again.returncode == EXIT_PREEMPTED, again.stderr[-3000:]
    assert list_checkpoints(tmp_path / "run" / "checkpoints")[-1].name == "step_00000033"
    resumed = subprocess.run(resume, env=hook_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_bit_equal(uninterrupted, tmp_path / "run")
    steps = [r["step"] for r in records(tmp_path / "run") if "loss" in r]
    assert steps == [10, 20, 30, 40, 44]  # the log windows open at the stops were continued, not restarted


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_the_number_of_data_workers_does_not_change_training(
    tmp_path, uninterrupted, workers, monkeypatch, capfd
):
    """In this process (no boundary is under test; the workers are real processes either way), against the
    uninterrupted run of a real process with one worker."""
    monkeypatch.syspath_prepend(str(HOOKS))  # the recipe imports the stop hook, inactive here
    recipe, args = quickstart(tmp_path, "run", *STOCHASTIC_DEPTH, f"data.num_workers={workers}")
    code, _, stderr = call_main("train.py", [recipe, *args], capfd)
    assert code == 0, stderr[-3000:]
    assert_bit_equal(uninterrupted, tmp_path / "run")


@pytest.mark.slow
def test_two_processes_of_batch_8_train_as_one_process_of_batch_16_with_augmentation(tmp_path):
    """Same samples and augmentations per step; DDP averages the two halves (a ConvNeXt: no BatchNorm)."""
    common = ['model.name="test_convnext"', "train.epochs=1", "data.num_workers=1", "eval.enabled=false"]
    one, _, _ = train_quickstart(tmp_path, "one", *common, "data.batch_size=16")
    assert one.returncode == 0, one.stderr[-3000:]
    two, _, _ = train_quickstart(tmp_path, "two", *common, "data.batch_size=8", nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for key in a:  # 89 AdamW steps of gradients summed in another order: drift of ~1e-5, not more
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-3)
    one_records, two_records = records(tmp_path / "one"), records(tmp_path / "two")
    losses = [(r["loss"], s["loss"]) for r, s in zip(one_records, two_records, strict=True)]
    assert len(losses) == 9 and all(x == pytest.approx(y, rel=1e-4) for x, y in losses)


@pytest.mark.slow
def test_resume_with_mixup_cutmix_and_ema_on_is_bit_equal(tmp_path):
    """recipes/quickstart_mixup.toml (Mixup + CutMix drawn from (seed, step), EMA in every checkpoint), one
    epoch (a quick trial: the cosine after the warm-up is dropped), stopped in its middle."""
    mixing = ("data.num_workers=1", "train.epochs=1")
    ref, _, _ = train_quickstart(tmp_path, "ref", *mixing, recipe_name="quickstart_mixup")
    assert ref.returncode == 0, ref.stderr[-3000:]
    proc, recipe, args = train_quickstart(
        tmp_path, "run", *mixing, recipe_name="quickstart_mixup", stop_at=15
    )
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "step_00000015" / "model_ema.safetensors").is_file()
    resumed = subprocess.run(
        train_command(recipe, *args, "--resume", "auto"), env=hook_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_bit_equal(tmp_path / "ref", tmp_path / "run")
    ema_a = load_file(str(tmp_path / "ref" / "model_ema.safetensors"))
    ema_b = load_file(str(tmp_path / "run" / "model_ema.safetensors"))
    assert ema_a.keys() == ema_b.keys() and all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    evals = [r for r in records(tmp_path / "run") if "eval_top1" in r]
    assert evals and all("ema_eval_top1" in r for r in evals)
