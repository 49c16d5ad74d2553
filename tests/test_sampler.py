"""trainer/data/order.py: each epoch's global order, the same global batches on any number of processes
and accumulation steps, and DeiT's repeated augmentation (timm's selection, copies apart) within it."""

from __future__ import annotations

from collections import Counter

import pytest

from trainer.data.order import map_style_sampler, streamed_sampler


def epoch_indices(
    size: int,
    processes: int,
    repeats: int = 1,
    seed: int = 0,
    epoch: int = 0,
    batch: int = 8,
    accumulate: int = 1,
) -> list[list[int]]:
    """Every process's indices of an epoch, in its order."""
    per_process = []
    for rank in range(processes):
        sampler = map_style_sampler(
            size,
            seed=seed,
            repeats=repeats,
            batch_size=batch,
            num_processes=processes,
            rank=rank,
            accumulate=accumulate,
        )
        sampler.set_epoch(epoch)
        per_process.append([i for micro_batch in sampler for i in micro_batch])
    return per_process


def global_batches(sampler_of, processes: int, accumulate: int, start: int = 0) -> list[list[int]]:
    """The epoch's global batches as sets of indices (each step's micro-batches of every process)."""
    micro = []
    for rank in range(processes):
        sampler = sampler_of(rank)
        sampler.start_at(start * accumulate)
        micro.append(list(sampler))
    steps = -(-len(micro[0]) // accumulate)  # the last, short step's micro-batches without drop_last
    assert all(len(m) == len(micro[0]) for m in micro)  # every process as many micro-batches
    return [
        sorted(i for m in micro for batch in m[t * accumulate : (t + 1) * accumulate] for i in batch)
        for t in range(steps)
    ]


@pytest.mark.parametrize(
    ("processes", "batch", "accumulate"), [(1, 16, 1), (2, 8, 1), (2, 4, 2), (4, 2, 2), (1, 4, 4)]
)
@pytest.mark.parametrize("drop_last", [True, False])
def test_the_global_batches_are_the_same_on_any_number_of_processes(processes, batch, accumulate, drop_last):
    def of(rank: int, p=processes, b=batch, a=accumulate):
        return map_style_sampler(
            100, seed=3, batch_size=b, num_processes=p, rank=rank, accumulate=a, drop_last=drop_last
        )

    reference = global_batches(
        lambda r: map_style_sampler(100, seed=3, batch_size=16, drop_last=drop_last), 1, 1
    )
    assert global_batches(of, processes, accumulate) == reference
    assert len(reference) == (6 if drop_last else 7) and sorted(i for b in reference for i in b)[:96] != []
    assert global_batches(of, processes, accumulate, start=4) == reference[4:]  # a resumed epoch


def test_a_streamed_epoch_is_the_same_global_batches_on_any_number_of_processes():
    blocks = ((10, 10, 5), (10, 10, 10), (7,))

    def of(p, b, a):
        return lambda rank: streamed_sampler(
            blocks, seed=1, batch_size=b, num_processes=p, rank=rank, accumulate=a
        )

    reference = global_batches(of(1, 12, 1), 1, 1)
    assert len(reference) == 5 and len({i for b in reference for i in b}) == 60
    assert global_batches(of(2, 6, 1), 2, 1) == global_batches(of(3, 2, 2), 3, 2) == reference
    one = streamed_sampler(blocks, seed=1, batch_size=12)
    one.set_epoch(1)
    epoch1 = list(one)
    assert epoch1 != list(streamed_sampler(blocks, seed=1, batch_size=12))  # another epoch, another order


@pytest.mark.parametrize(("processes", "repeats"), [(2, 3), (4, 3), (2, 2), (1, 3)])
def test_each_selected_sample_is_seen_n_times_per_epoch_across_processes(processes, repeats):
    size = 1024
    seen = [i for indices in epoch_indices(size, processes, repeats) for i in indices]
    assert len(seen) == len(set(seen))  # every copy is its own index: its own augmentation
    counts = Counter(i % size for i in seen)
    assert len(seen) == size // 256 * 256  # DeiT's RA keeps the epoch's length (timm's selection)
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


def test_repeated_copies_make_the_same_global_batches_on_any_number_of_processes():
    one = epoch_indices(512, 1, 3, batch=16)
    two = epoch_indices(512, 2, 3, batch=8)
    steps_one = [sorted(one[0][t * 16 : (t + 1) * 16]) for t in range(32)]
    steps_two = [sorted(two[0][t * 8 : (t + 1) * 8] + two[1][t * 8 : (t + 1) * 8]) for t in range(32)]
    assert steps_one == steps_two


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
