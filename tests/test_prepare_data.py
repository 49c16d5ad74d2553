"""scripts/prepare_data.py: an image folder, an annotation file or parquet files as parquet shards (images as
their encoded bytes, labels with class names), even in size, shuffled, named so that `data.path = OUT_DIR`
reads them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runs import ROOT, call_main, train_env
from trainer.data.prepare import shard_sizes
from trainer.data.sources.shards import split_of

SCRIPT = ROOT / "scripts" / "prepare_data.py"
DIGITS = ROOT / "data" / "digits"


@pytest.fixture(scope="module")
def prepare_main() -> str:
    return "prepare_data.py"


def run_main(script: str, argv: list, capfd) -> tuple[object, str, str]:
    """scripts/prepare_data.py's main in this process (runs.call_main)."""
    return call_main(script, argv, capfd)


def rows_of(files: list[Path]) -> list[dict]:
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def source_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.mark.parametrize(
    ("rows", "kwargs", "sizes"),
    [
        (48, {"num_shards": 4}, [12, 12, 12, 12]),
        (50, {"num_shards": 4}, [13, 13, 12, 12]),
        (50, {"shard_size": 20}, [17, 17, 16]),
        (3, {"num_shards": 8}, [1, 1, 1]),
        (7, {"shard_size": 1000}, [7]),
    ],
)
def test_shards_are_as_even_as_possible(rows, kwargs, sizes):
    assert shard_sizes(rows, **kwargs) == sizes


def test_split_keywords_in_shard_names_and_folders():
    assert split_of("train-00000-of-00008.parquet") == "train"
    assert split_of("validation-00001-of-00002.parquet") == "validation"
    assert split_of("val/shard-000.tar") == "validation"
    assert split_of("imagenet-train-0001.tar") == "train"
    assert split_of("shard-0001.parquet") is None


def test_a_folder_becomes_even_shuffled_shards_holding_every_image_once_as_its_bytes(
    tiny_imagefolder, tmp_path, prepare_main, capfd
):
    out = tmp_path / "shards"
    code, stdout, stderr = run_main(prepare_main, [tiny_imagefolder, str(out), "--num-shards", "4"], capfd)
    assert code == 0, stderr
    assert "train: 48 rows in 4 shard(s)" in stdout and "validation: 16 rows in 4 shard(s)" in stdout
    train = sorted(out.glob("train-*.parquet"))
    assert [f.name for f in train] == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    assert [pq.ParquetFile(f).metadata.num_rows for f in train] == [12, 12, 12, 12]
    rows = rows_of(train)
    originals = source_files(Path(tiny_imagefolder))
    assert sorted(r["image"]["path"] for r in rows) == sorted(p for p in originals if p.startswith("train/"))
    assert all(r["image"]["bytes"] == originals[r["image"]["path"]] for r in rows)  # not re-encoded
    names = ["north_east", "north_west", "south_east", "south_west"]  # class folders, sorted
    assert all(names[r["label"]] == r["image"]["path"].split("/")[1] for r in rows)
    paths = [r["image"]["path"] for r in rows]
    assert paths != sorted(paths)  # shuffled: a shard is not one class

    import datasets

    features = datasets.Features.from_arrow_schema(pq.read_schema(train[0]))
    assert features["label"] == datasets.ClassLabel(names=names) and isinstance(
        features["image"], datasets.Image
    )

    again = tmp_path / "again"
    assert run_main(prepare_main, [tiny_imagefolder, str(again), "--num-shards", "4"], capfd)[0] == 0
    assert rows_of(sorted(again.glob("train-*.parquet"))) == rows  # the shuffle is seeded


def test_the_shards_load_map_style_too_in_the_same_order(tiny_imagefolder, tmp_path, prepare_main, capfd):
    from trainer.data import load_dataset_dict

    out = tmp_path / "shards"
    assert run_main(prepare_main, [tiny_imagefolder, str(out), "--shard-size", "20"], capfd)[0] == 0
    splits = load_dataset_dict({"path": str(out), "batch_size": 4})
    assert {k: len(v) for k, v in splits.items()} == {"train": 48, "validation": 16}
    rows = rows_of(sorted(out.glob("train-*.parquet")))
    assert splits["train"]["label"] == [r["label"] for r in rows]


def test_an_annotation_file_becomes_shards_of_its_split(tiny_imagefolder, tmp_path, prepare_main, capfd):
    data_root = tmp_path / "root"
    shutil.copytree(Path(tiny_imagefolder) / "validation", data_root / "val")
    images = sorted(str(p.relative_to(data_root / "val")) for p in (data_root / "val").rglob("*.png"))
    (data_root / "meta").mkdir()
    (data_root / "meta" / "val.txt").write_text("".join(f"{p} {i % 3}\n" for i, p in enumerate(images)))
    out = tmp_path / "shards"
    argv = [str(data_root), str(out), "--ann-file", "meta/val.txt", "--data-prefix", "val"]
    code, stdout, stderr = run_main(prepare_main, [*argv, "--split", "validation", "--no-shuffle"], capfd)
    assert code == 0, stderr
    rows = rows_of(sorted(out.glob("validation-*.parquet")))
    assert [r["label"] for r in rows] == [i % 3 for i in range(len(images))]  # --no-shuffle keeps the order
    assert [r["image"]["path"] for r in rows] == [f"val/{p}" for p in images]
    assert not list(out.glob("train-*"))


def test_overwrite_replaces_the_split_and_leaves_no_temporary_file(
    tiny_imagefolder, tmp_path, prepare_main, capfd
):
    out = tmp_path / "shards"
    argv = [tiny_imagefolder, str(out), "--split", "train"]
    assert run_main(prepare_main, [*argv, "--num-shards", "3"], capfd)[0] == 0
    code, _, stderr = run_main(prepare_main, [*argv, "--num-shards", "2"], capfd)
    assert code == 2 and "already has 3 train shard(s)" in stderr and "--overwrite" in stderr
    assert run_main(prepare_main, [*argv, "--num-shards", "2", "--overwrite"], capfd)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]


def image_label_pairs(files: list[Path]) -> list[tuple[bytes, int]]:
    """Every row's (encoded image, label), sorted: the rows whatever their order and shard."""
    table = [row for f in files for row in pq.read_table(f, columns=["image", "label"]).to_pylist()]
    return sorted((row["image"]["bytes"], row["label"]) for row in table)


def test_the_shipped_parquet_digits_become_shards_with_the_same_rows_and_class_names(
    tmp_path, prepare_main, capfd
):
    import datasets

    from trainer.data import open_splits

    out = tmp_path / "shards"
    code, stdout, stderr = run_main(prepare_main, [DIGITS, out, "--num-shards", "4"], capfd)
    assert code == 0 and stderr == "", stderr
    assert "train: 1438 rows in 4 shard(s)" in stdout and "validation: 359 rows in 4 shard(s)" in stdout
    for split in ("train", "validation"):
        shards = sorted(out.glob(f"{split}-*.parquet"))
        assert [pq.ParquetFile(f).metadata.num_rows for f in shards] == shard_sizes(
            1438 if split == "train" else 359, num_shards=4
        )
        assert image_label_pairs(shards) == image_label_pairs([DIGITS / f"{split}.parquet"])
        features = datasets.Features.from_arrow_schema(pq.read_schema(shards[0]))
        assert features["label"] == datasets.ClassLabel(names=[str(d) for d in range(10)])
    train, evaluation = open_splits({"path": str(out), "streaming": True, "batch_size": 8}, seed=0)
    assert train.shards is not None and len(train) == 1438  # a streamed run reads the shards
    assert train.label_names("label") == evaluation.label_names("label") == [str(d) for d in range(10)]


def test_one_parquet_file_or_a_glob_writes_the_split_its_name_says(tmp_path, prepare_main, capfd):
    one = tmp_path / "one"
    code, stdout, stderr = run_main(prepare_main, [DIGITS / "validation.parquet", one], capfd)
    assert code == 0, stderr
    assert [f.name for f in one.iterdir()] == ["validation-00000-of-00001.parquet"]
    globbed = tmp_path / "glob"
    code, stdout, stderr = run_main(prepare_main, [f"{DIGITS}/*.parquet", globbed, "--split", "train"], capfd)
    assert code == 0, stderr
    shards = sorted(globbed.iterdir())
    assert [f.name for f in shards] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert image_label_pairs(shards) == image_label_pairs([DIGITS / "train.parquet"])


def test_parquet_columns_of_other_names_are_written_as_image_and_label(tmp_path, prepare_main, capfd):
    source = pq.read_table(DIGITS / "validation.parquet")
    renamed = source.rename_columns(["pixels", "digit"])
    pq.write_table(renamed.replace_schema_metadata(), tmp_path / "val.parquet")  # plain columns: no features
    out = tmp_path / "shards"
    argv = [tmp_path / "val.parquet", out, "--image-column", "pixels", "--label-column", "digit"]
    code, stdout, stderr = run_main(prepare_main, argv, capfd)
    assert code == 0, stderr
    assert image_label_pairs(sorted(out.glob("validation-*.parquet"))) == image_label_pairs(
        [DIGITS / "validation.parquet"]
    )


def bad_inputs(root: Path, tmp: Path) -> list[tuple[list[str], str]]:
    empty = tmp / "empty"
    (empty / "cat").mkdir(parents=True)
    missing = tmp / "missing_image"
    (missing / "imgs").mkdir(parents=True)
    for name in ("a.png", "c.png"):
        (missing / "imgs" / name).write_bytes((root / "train" / "north_west" / "000.png").read_bytes())
    (missing / "ann.txt").write_text("a.png 0\nb.png 1\nc.png 0\n")
    digits = pq.read_table(DIGITS / "validation.parquet")
    no_image = tmp / "no_image.parquet"
    pq.write_table(digits.rename_columns(["pixels", "label"]).replace_schema_metadata(), no_image)
    text_labels = tmp / "text_labels" / "train.parquet"
    text_labels.parent.mkdir()
    names = digits.column("label").cast("string")
    pq.write_table(digits.replace_schema_metadata().set_column(1, "label", names), text_labels)
    out = str(tmp / "out")
    return [
        ([str(no_image), out], "--image-column: split 'train' has no column 'image'"),
        (
            [str(no_image), out, "--image-column", "label"],
            "--image-column: column 'label' holds Value('int64')",
        ),
        ([str(text_labels.parent), out], "--label-column: column 'label' holds Value('string')"),
        ([str(tmp / "nope.parquet"), out], "SRC: no such file or directory: "),
        ([str(root), out, "--image-column", "img"], "--image-column: only used with parquet input"),
        ([str(tmp / "nope"), out], "no such directory"),
        ([str(empty), out], "no images in <class>/<image> folders"),
        ([str(root), out, "--split", "tran"], "has no split 'tran'; did you mean 'train'?"),
        ([str(root), out, "--num-shards", "0"], "--num-shards: must be >= 1"),
        ([str(root), out, "--shard-size", "5", "--num-shards", "2"], "not allowed with argument"),
        ([str(root), out, "--data-prefix", "x"], "--data-prefix: only used with --ann-file"),
        ([str(missing), out, "--ann-file", "nope.txt"], "no such annotation file"),
        ([str(missing), out, "--ann-file", "ann.txt", "--data-prefix", "imgs"], "cannot read image"),
    ]


def test_bad_input_is_one_line_and_exit_code_2(tiny_imagefolder, tmp_path, prepare_main, capfd):
    for argv, fragment in bad_inputs(Path(tiny_imagefolder), tmp_path):
        code, _, stderr = run_main(prepare_main, argv, capfd)
        assert code == 2, (argv, stderr)
        assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
        assert ".py: error: " in stderr, stderr  # the script's name, as argparse says it
        assert fragment in stderr, (fragment, stderr)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.parquet"))


def test_the_script_runs_as_a_process(tiny_imagefolder, tmp_path):
    out = tmp_path / "shards"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), tiny_imagefolder, str(out), "--num-shards", "2"],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("*.parquet"))) == 4
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "nope"), str(out)],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such directory" in missing.stderr
    )
