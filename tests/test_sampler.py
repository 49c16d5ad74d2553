"""trainer/sampler.py: repeated augmentation with timm's sampler, ordered by (seed, epoch), copies apart."""

from __future__ import annotations

from collections import Counter

import pytest

from trainer.data.sampler import RepeatedAugmentation


def epoch_indices(size: int, processes: int, repeats: int, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    per_process = []
    for rank in range(processes):
        sampler = RepeatedAugmentation(
            list(range(size)), num_replicas=processes, rank=rank, num_repeats=repeats, seed=seed
        )
        sampler.set_epoch(epoch)
        per_process.append(list(sampler))
    return per_process


@pytest.mark.parametrize(("processes", "repeats"), [(2, 3), (4, 3), (2, 2), (1, 3)])
def test_each_selected_sample_is_seen_n_times_per_epoch_across_processes(processes, repeats):
    size = 1024
    seen = [i for indices in epoch_indices(size, processes, repeats) for i in indices]
    assert len(seen) == len(set(seen))  # every copy is its own index: its own augmentation
    counts = Counter(i % size for i in seen)
    assert len(seen) == size // processes * processes  # DeiT's RA keeps the epoch's length
    histogram = Counter(counts.values())
    assert (
        set(histogram) <= {repeats, *range(1, repeats)} and sum(histogram.values()) - histogram[repeats] <= 1
    )
    for copies in ({i // size for i in seen if i % size == s} for s in counts):
        assert copies == set(range(len(copies)))  # copy k of sample s is s + k * size


def test_copies_of_a_sample_go_to_different_processes():
    first, second = epoch_indices(512, 2, 3)
    on_first, on_second = {i % 512 for i in first}, {i % 512 for i in second}
    assert len(on_first & on_second) > 100


def test_order_is_a_function_of_seed_and_epoch():
    assert epoch_indices(512, 2, 3, seed=0, epoch=1) == epoch_indices(512, 2, 3, seed=0, epoch=1)
    assert epoch_indices(512, 2, 3, seed=0, epoch=1) != epoch_indices(512, 2, 3, seed=0, epoch=2)
    assert epoch_indices(512, 2, 3, seed=0, epoch=1) != epoch_indices(512, 2, 3, seed=1, epoch=1)


@pytest.mark.slow
def test_two_real_processes_with_repeated_augmentation_see_each_sample_n_times_per_epoch(tmp_path):
    """torchrun, 2 processes, a data worker each: the loop must not shard the already-sharded sampler."""
    import subprocess

    from runs import ROOT, records, train_command, train_env

    seen_dir = tmp_path / "seen"
    seen_dir.mkdir()
    recipe = tmp_path / "ra.toml"
    recipe.write_text((ROOT / "recipes" / "quickstart.toml").read_text())
    sets = [
        f'output_dir="{tmp_path / "run"}"',
        f'data.path="{ROOT / "data" / "digits"}"',
        'imports=["record_indices"]',
        "data.repeated_augmentation=3",
        "data.num_workers=1",
        "data.batch_size=32",
        "train.epochs=2",
        'model.name="test_resnet"',
        "eval.enabled=false",
    ]
    env = {
        **train_env(),
        "PYTHONPATH": str(ROOT / "tests" / "fixtures" / "hooks"),
        "TRAINER_TEST_INDEX_DIR": str(seen_dir),
    }
    proc = subprocess.run(
        train_command(recipe, "--set", *sets, nproc=2), env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    size = 1438  # digits' train split
    by_epoch: dict[int, list[int]] = {0: [], 1: []}
    for file in seen_dir.iterdir():
        for line in file.read_text().splitlines():
            epoch, index = map(int, line.split())
            by_epoch[epoch].append(index)
    per_process = 1280 // 2 // 32  # timm selects len // 256 * 256 samples per epoch, split over 2 processes
    assert [r["step"] for r in records(tmp_path / "run") if "loss" in r][-1] == 2 * per_process
    for epoch, seen in by_epoch.items():
        assert len(seen) == 1280 and len(set(seen)) == 1280, epoch  # every copy once, no resharding
        counts = Counter(Counter(i % size for i in seen).values())
        assert counts[3] >= 1280 // 3 - 1 and sum(counts.values()) - counts[3] <= 1, (epoch, counts)
    assert set(by_epoch[0]) != set(by_epoch[1])
