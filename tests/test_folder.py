"""trainer/data/sources/folder.py and annotations.py: class-folder trees and MMPretrain annotation files as
Datasets, indexed and cached."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data.sources.annotations import annotation_dataset
from trainer.data.sources.folder import folder_dataset_dict, list_class_folders
from trainer.errors import RecipeError


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def image(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def tree(root: Path, classes=("cat", "dog"), per_class: int = 3) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            image(root / name / f"{i}.png", 40 * c)
    (root / "dog" / "notes.txt").write_text("not an image")
    image(root / "dog" / "nested" / "deep.jpg")
    return root


def test_listing_labels_class_folders_in_sorted_order_with_nested_images(tmp_path):
    found = list_class_folders(tree(tmp_path / "images"))
    assert found.classes == ["cat", "dog"]
    assert found.paths == ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png", "dog/2.png",
                           "dog/nested/deep.jpg"]  # fmt: skip
    assert found.labels == [0, 0, 0, 1, 1, 1, 1]


def test_folder_dataset_decodes_images_and_names_classes(tmp_path):
    splits = folder_dataset_dict(tree(tmp_path / "images"))
    train = splits["train"]
    assert list(splits) == ["train"] and len(train) == 7
    assert train.features["label"].names == ["cat", "dog"]
    example = train[3]
    assert example["label"] == 1 and example["image"].size == (8, 8)


def test_split_folders_become_splits(tmp_path):
    tree(tmp_path / "root" / "train")
    tree(tmp_path / "root" / "val", per_class=1)
    splits = folder_dataset_dict(tmp_path / "root")
    assert {k: len(v) for k, v in splits.items()} == {"train": 7, "validation": 3}


def test_a_second_start_reuses_the_index_and_a_changed_folder_is_listed_again(tmp_path, monkeypatch):
    import trainer.data.sources.folder as folder

    root = tree(tmp_path / "images")
    folder_dataset_dict(root)
    calls = []
    original = folder.list_class_folders
    monkeypatch.setattr(folder, "list_class_folders", lambda r: calls.append(r) or original(r))
    assert len(folder_dataset_dict(root)["train"]) == 7 and calls == []
    time.sleep(0.01)
    image(root / "cat" / "new.png")
    assert len(folder_dataset_dict(root)["train"]) == 8 and len(calls) == 1
    time.sleep(0.01)
    os.remove(root / "dog" / "nested" / "deep.jpg")
    assert len(folder_dataset_dict(root)["train"]) == 7 and len(calls) == 2


def test_an_empty_folder_is_one_error_on_data_path(tmp_path):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    with pytest.raises(RecipeError) as info:
        folder_dataset_dict(tmp_path / "images")
    assert info.value.key == "data.path" and "no images" in info.value.message


def test_annotation_file_lists_paths_under_the_prefix_with_integer_labels(tmp_path):
    root = tmp_path / "imagenet"
    image(root / "train" / "n01" / "a.JPEG")
    image(root / "train" / "n02" / "b.JPEG", 200)
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("n01/a.JPEG 0\nn02/b.JPEG 1\n\n")
    ds = annotation_dataset(root, "meta/train.txt", "train", "data.ann_file")
    assert len(ds) == 2 and ds[1]["label"] == 1 and ds[1]["image"].getpixel((0, 0)) == (200, 200, 200)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("n01/a.JPEG\n", "expected 'relative/path label'"),
        ("n01/missing.JPEG 0\n", "'n01/missing.JPEG', which is not a file"),
        ("", "lists no images"),
    ],
)
def test_bad_annotation_files_are_one_line_on_the_key(tmp_path, content, fragment):
    image(tmp_path / "train" / "n01" / "a.JPEG")
    (tmp_path / "train.txt").write_text(content)
    with pytest.raises(RecipeError) as info:
        annotation_dataset(tmp_path, "train.txt", "train", "data.ann_file")
    assert info.value.key == "data.ann_file" and fragment in info.value.message


def test_a_missing_annotation_file_names_it(tmp_path):
    with pytest.raises(RecipeError) as info:
        annotation_dataset(tmp_path, "meta/val.txt", "", "data.eval_ann_file")
    assert info.value.key == "data.eval_ann_file" and "meta/val.txt" in info.value.message
