"""data.streaming: parquet and WebDataset shards read as streams, each process its share, every row once per
epoch in an order of (seed, epoch), each row augmented as the same row read map-style, the same number of
full batches on every process, and an exact resume in the middle of a sharded epoch."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from runs import ROOT, records, train_command, train_env, weights
from trainer.data.seeding import SeededTransform
from trainer.errors import RecipeError

TRAIN_ROWS = 48  # tiny_imagefolder's train split: 4 classes of 16x16 PNGs


def prepare(src: str, out: Path, *args: str) -> Path:
    """scripts/prepare_data.py SRC OUT *args, in this process."""
    spec = importlib.util.spec_from_file_location("prepare_data_script", ROOT / "scripts" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([src, str(out), *args]) == 0
    return out


@pytest.fixture(scope="module")
def shards(tiny_imagefolder, tmp_path_factory) -> Path:
    """tiny_imagefolder as 4 train shards of 12 rows and 2 validation shards of 8."""
    out = tmp_path_factory.mktemp("shards")
    prepare(tiny_imagefolder, out, "--split", "train", "--num-shards", "4")
    return prepare(tiny_imagefolder, out, "--split", "validation", "--num-shards", "2")


@pytest.fixture(scope="module")
def uneven(shards, tmp_path_factory) -> Path:
    """The same 48 train rows in shards of 6, 18, 9 and 15 rows (row groups of 5)."""
    out = tmp_path_factory.mktemp("uneven")
    table = pa.concat_tables([pq.read_table(f) for f in sorted(shards.glob("train-*.parquet"))])
    start = 0
    for i, size in enumerate((6, 18, 9, 15)):
        pq.write_table(table.slice(start, size), out / f"train-{i:05d}-of-00004.parquet", row_group_size=5)
        start += size
    return out


@pytest.fixture(scope="module")
def model():
    import timm

    return timm.create_model("test_resnet", num_classes=4)


def loader(path: Path, model, *, rank: int = 0, world: int = 1, **data):
    from trainer.data import build_dataloaders

    cfg = {"path": str(path), "streaming": True, "batch_size": 4, "image_size": 16, "num_workers": 0, **data}
    return build_dataloaders(cfg, model, seed=0, num_replicas=world, rank=rank)


@pytest.fixture
def seen(tmp_path, monkeypatch):
    """Records every (epoch, index) a train SeededTransform loads, in this process or its data workers;
    returns a function reading them back as {epoch: [index, ...]} in load order per process."""
    folder = tmp_path / "seen"
    folder.mkdir()
    original = SeededTransform.__getitems__

    def recording(self, indices):
        if self.seed is not None:
            with open(folder / f"{os.getpid()}.txt", "a") as f:
                f.writelines(f"{int(self._epoch)} {int(i)}\n" for i in indices)
        return original(self, indices)

    monkeypatch.setattr(SeededTransform, "__getitems__", recording)

    def read() -> dict[int, list[int]]:
        by_epoch: dict[int, list[int]] = defaultdict(list)
        for file in sorted(folder.iterdir()):
            for line in file.read_text().splitlines():
                epoch, index = map(int, line.split())
                by_epoch[epoch].append(index)
            file.unlink()
        return dict(by_epoch)

    return read


def run_epochs(train, epochs=(0, 1)) -> list[int]:
    """Batches per epoch, each checked to be full."""
    from trainer.data import set_position

    counts = []
    for epoch in epochs:
        set_position(train, epoch)
        batches = [labels for _, labels in train]
        assert all(len(labels) == train.batch_sampler.batch_size for labels in batches)
        counts.append(len(batches))
    return counts


def test_shards_are_found_by_split_in_a_directory_a_glob_or_a_file(tmp_path):
    from trainer.data.sources.shards import find_shards

    for name in ("train/a-0.tar", "train/a-1.tar", "val/a-0.tar", "notes.txt", "val/.hidden.tar"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = {
        "train": [str(tmp_path / "train" / f"a-{i}.tar") for i in (0, 1)],
        "validation": [str(tmp_path / "val" / "a-0.tar")],
    }
    assert find_shards(str(tmp_path), "auto") == ("webdataset", found)
    assert find_shards(f"{tmp_path}/*/a-*.tar", "auto") == ("webdataset", found)  # folders below the glob
    assert find_shards(f"{tmp_path}/val/*.tar", "webdataset") == (
        "webdataset",
        {"train": found["validation"]},
    )
    assert find_shards(str(tmp_path / "val" / "a-0.tar"), "auto")[1] == {"train": found["validation"]}
    with pytest.raises(RecipeError, match="no .parquet shards in"):
        find_shards(str(tmp_path), "parquet")


@pytest.mark.parametrize("workers", [0, 2])
def test_two_processes_read_every_row_once_per_epoch_in_an_order_of_seed_and_epoch(
    shards, model, seen, workers
):
    orders = []
    for rank in range(2):
        train, _ = loader(shards, model, rank=rank, world=2, num_workers=workers, eval_split="none")
        assert len(train) == TRAIN_ROWS // 2 // 4
        assert run_epochs(train) == [len(train), len(train)]
        orders.append(seen())
    for epoch in (0, 1):
        both = orders[0][epoch] + orders[1][epoch]
        assert sorted(both) == list(range(TRAIN_ROWS)), epoch  # every row once, by its global index
        assert len(orders[0][epoch]) == len(orders[1][epoch]) == TRAIN_ROWS // 2
    assert orders[0][0] != orders[0][1]  # another order every epoch
    train, _ = loader(shards, model, rank=0, world=2, num_workers=workers, eval_split="none")
    run_epochs(train)
    assert seen() == orders[0]  # the same order on every run


def test_each_step_reads_the_same_rows_on_one_two_or_three_processes(shards, model, seen):
    """The global batch (12 rows) is the same whatever processes and batch sizes make it up."""

    def steps(world: int, batch: int) -> list[list[int]]:
        per_rank = []
        for rank in range(world):
            train, _ = loader(shards, model, rank=rank, world=world, batch_size=batch, eval_split="none")
            run_epochs(train, epochs=(1,))
            per_rank.append(seen()[1])
        return [sorted(i for r in per_rank for i in r[s * batch : (s + 1) * batch]) for s in range(4)]

    one = steps(1, 12)
    assert sorted(i for step in one for i in step) == list(range(TRAIN_ROWS))
    assert steps(2, 6) == steps(3, 4) == one


@pytest.mark.parametrize("workers", [0, 1])
def test_uneven_shards_are_read_whole_every_epoch(uneven, model, seen, workers):
    got = []
    for rank in range(2):
        train, _ = loader(uneven, model, rank=rank, world=2, num_workers=workers, eval_split="none")
        assert len(train) == 6 and run_epochs(train) == [6, 6]
        got.append(seen())
    for epoch in (0, 1):
        assert sorted(got[0][epoch] + got[1][epoch]) == list(range(TRAIN_ROWS))


def test_a_streamed_row_is_augmented_as_the_same_row_read_map_style(shards, model, seen):
    from trainer.data import load_dataset_dict, set_position
    from trainer.data.transforms import build_transforms

    train, _ = loader(shards, model, eval_split="none")
    set_position(train, 1)
    streamed = [pixels for batch, _ in train for pixels in batch]  # one epoch, as the loader reads it
    indices = seen()[1]
    assert sorted(indices) == list(range(TRAIN_ROWS))
    map_style = load_dataset_dict({"path": str(shards), "batch_size": 4})["train"]
    train_tf, _ = build_transforms(model, image_size=16)
    reference = SeededTransform(map_style, train_tf, seed=0)
    reference.set_epoch(1)
    for pixels, index in zip(streamed, indices, strict=True):
        assert torch.equal(pixels, reference[index]["pixel_values"]), index  # uint8: the same pixels
    reference.set_epoch(2)
    assert not torch.equal(streamed[0], reference[indices[0]]["pixel_values"])


def test_webdataset_shards_stream_as_parquet_does(tiny_imagefolder, model, seen, tmp_path):
    from trainer.data import load_dataset_dict

    root = Path(tiny_imagefolder) / "train"
    images = sorted(root.rglob("*.png"))
    classes = sorted(p.name for p in root.iterdir())
    for shard in range(4):
        with tarfile.open(tmp_path / f"train-{shard:05d}.tar", "w") as tar:
            for number, image in enumerate(images[shard * 12 : (shard + 1) * 12], start=shard * 12):
                for name, data in (
                    (f"{number:06d}.png", image.read_bytes()),
                    (f"{number:06d}.cls", str(classes.index(image.parent.name)).encode()),
                ):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    columns = {"image_column": "png", "label_column": "cls", "eval_split": "none"}
    got = []
    for rank in range(2):
        train, _ = loader(tmp_path, model, rank=rank, world=2, **columns)
        assert len(train) == 6 and run_epochs(train, epochs=(0,)) == [6]
        got += seen()[0]
    assert sorted(got) == list(range(TRAIN_ROWS))
    rows = train.dataset.dataset
    assert rows[13]["cls"] == classes.index(images[13].parent.name)  # read back from the second .tar
    assert len(load_dataset_dict({"path": str(tmp_path), "streaming": True, "batch_size": 4})["train"]) == 48


def test_an_unreadable_image_is_replaced_by_the_next_row_and_counted(shards, model, tmp_path, capfd):
    for file in shards.glob("*.parquet"):
        (tmp_path / file.name).write_bytes(file.read_bytes())
    broken = tmp_path / "train-00001-of-00004.parquet"
    table = pq.read_table(broken)
    image = table.column("image").combine_chunks()
    blobs = image.field("bytes").to_pylist()
    blobs[3] = b"not an image"
    fixed = pa.StructArray.from_arrays(
        [pa.array(blobs, pa.binary()), image.field("path")], names=["bytes", "path"]
    )
    pq.write_table(table.set_column(0, "image", fixed), broken)
    train, _ = loader(tmp_path, model, eval_split="none")
    assert run_epochs(train, epochs=(0,)) == [12]
    assert train.dataset.bad.total() == 1
    err = capfd.readouterr().err
    assert "data warning: unreadable image" in err and "in train-00001-of-00004.parquet" in err


def test_the_run_card_counts_the_streamed_splits(shards):
    from trainer.outputs.export import describe_data

    summary = describe_data({"path": str(shards), "streaming": True, "batch_size": 4})
    assert summary.sizes == {"train": 48, "eval": 16}
    assert summary.label_names == ["north_east", "north_west", "south_east", "south_west"]


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"path": "{shards}/nothing-*.parquet"}, "data.path", "no file matches"),
        ({"path": "{root}"}, "data.path", "no .parquet or .tar shards in"),
        ({"path": "{shards}", "image_column": "img"}, "data.image_column", "did you mean 'image'?"),
        ({"path": "{shards}", "train_split": "training"}, "data.train_split", "no split 'training'"),
        ({"path": "{shards}", "eval_split": "test"}, "data.eval_split", "set data.eval_split = 'none'"),
        (
            {"path": "{shards}", "batch_size": 32},
            "data.batch_size",
            "= 64 is more than the 48 training samples",
        ),
        ({"path": "{shards}", "num_classes": 2}, "data.label_column", "labels up to 3"),
    ],
)
def test_bad_shards_are_one_line_errors(shards, tmp_path, data, key, fragment):
    import timm

    (tmp_path / "notes.txt").write_text("no shards here")
    data = dict(data)
    num_classes = data.pop("num_classes", 4)
    data["path"] = data["path"].format(shards=shards, root=tmp_path)
    small = timm.create_model("test_resnet", num_classes=num_classes)
    with pytest.raises(RecipeError) as info:
        loader(data.pop("path"), small, world=2, **data)
    assert info.value.key == key and fragment in info.value.message, info.value


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"format": "webdataset"}, "data.format", "set data.streaming = true"),
        ({"shuffle_buffer": 100}, "data.shuffle_buffer", "only used with data.streaming"),
        ({"streaming": True, "format": "imagefolder"}, "data.streaming", "not format 'imagefolder'"),
        ({"streaming": True, "eval_fraction": 0.1}, "data.eval_fraction", "cannot hold out"),
        ({"streaming": True, "repeated_augmentation": 3}, "data.repeated_augmentation", "map-style"),
        ({"streaming": True, "ann_file": "meta/train.txt"}, "data.ann_file", "prepare_data.py --ann-file"),
    ],
)
def test_streaming_options_are_checked_with_the_recipe(data, key, fragment):
    from trainer.data import data_config

    with pytest.raises(RecipeError) as info:
        data_config({"path": "shards", "batch_size": 4, **data})
    assert info.value.key == key and fragment in info.value.message, info.value


# --- real processes -----------------------------------------------------------------------------------


def recipe(tmp_path: Path, shards: Path, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""seed = 0
output_dir = "{tmp_path / name}"
imports = ["record_indices", "sigterm_at_step"]

[model]
name = "test_resnet"
num_classes = 4

[data]
path = "{shards}"
streaming = true
image_size = 16
batch_size = 4
num_workers = 1

[train]
epochs = 2
log_every = 1
signal_check_every = 1

[optimizer]
type = "SGD"
lr = 0.05
momentum = 0.9
"""
    )
    return path


def launch(recipe_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_command(recipe_path, *args, nproc=2),
        env=train_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def two_processes(shards, tmp_path_factory) -> tuple[Path, dict[int, list[int]]]:
    """2 processes x 1 data worker over the 4 train shards for 2 epochs: the run and what it loaded."""
    tmp = tmp_path_factory.mktemp("two_processes")
    seen_dir = tmp / "seen"
    seen_dir.mkdir()
    proc = launch(recipe(tmp, shards, "ref"), TRAINER_TEST_INDEX_DIR=str(seen_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_epoch: dict[int, list[int]] = defaultdict(list)
    for file in seen_dir.iterdir():
        for line in file.read_text().splitlines():
            epoch, index = map(int, line.split())
            by_epoch[epoch].append(index)
    return tmp / "ref", dict(by_epoch)


@pytest.mark.slow
def test_two_processes_over_shards_see_every_sample_exactly_once_per_epoch(two_processes):
    out, by_epoch = two_processes
    assert set(by_epoch) == {0, 1}
    for epoch, indices in by_epoch.items():
        assert Counter(Counter(indices).values()) == {1: TRAIN_ROWS}, epoch
        assert sorted(indices) == list(range(TRAIN_ROWS))
    steps = [r["step"] for r in records(out) if "loss" in r]
    assert steps == list(range(1, 13))  # 48 rows / 2 processes / batch 4 = 6 steps an epoch
    assert [r["epoch"] for r in records(out) if "eval_top1" in r] == [1, 2]


@pytest.mark.slow
def test_sigterm_in_the_middle_of_a_sharded_epoch_then_resume_auto_continues_exactly(
    two_processes, shards, tmp_path
):
    reference, _ = two_processes
    path = recipe(tmp_path, shards, "run")
    stopped = launch(path, TRAINER_TEST_SIGTERM_AT_STEP="9")  # epoch 1, 3 of its 6 batches done
    assert stopped.returncode != 0
    assert (tmp_path / "run" / "checkpoints" / "step_00000009").is_dir(), stopped.stderr[-3000:]
    assert "stopped by signal 15 after step 9" in stopped.stdout + stopped.stderr
    resumed = launch(path, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step_00000009 at step 9" in resumed.stdout + resumed.stderr

    def comparable(out: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "samples_per_sec"} for r in records(out)]

    assert comparable(tmp_path / "run") == comparable(reference)
    a, b = weights(reference), weights(tmp_path / "run")
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
