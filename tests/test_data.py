"""trainer.data (sources, splits, loaders, transforms) on real `datasets` datasets written to disk, with
real timm models."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import timm
import torch
from datasets import Value

from trainer.data import (
    DATA_KEYS,
    batches_per_epoch,
    build_dataloaders,
    detect_format,
    load_splits,
    loader_options,
    set_position,
    validate_data_cfg,
)
from trainer.data.transforms import augment_arg_names, build_transforms
from trainer.errors import RecipeError

SEED = 0
NUM_CLASSES = 4  # the tiny datasets of conftest.py: 4 classes, 48 train and 16 validation 16x16 images
SPLIT_SIZES = {"train": 48, "validation": 16}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return timm_model()


def data_cfg(path: str, **overrides) -> dict:
    return {"path": path, "batch_size": 8, "image_size": 16, "num_workers": 0, **overrides}


def timm_model(name: str = "test_resnet", **kwargs) -> torch.nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **kwargs)


def image_ids(dataset) -> set[bytes]:
    return {image.tobytes() for image in dataset["image"]}


def first_batch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch as the model sees it (uint8 pixels normalized as the loop does on the device)."""
    from trainer.data.transforms import batch_normalizer

    pixels, labels = next(iter(loader))
    return batch_normalizer(loader, torch.device("cpu"))(pixels), labels


@contextmanager
def raises_recipe_error(key: str, *fragments: str) -> Iterator[None]:
    """Expect a RecipeError at exactly `key` whose message contains every fragment."""
    with pytest.raises(RecipeError) as info:
        yield
    assert info.value.key == key, f"key {info.value.key!r} != {key!r}: {info.value}"
    for fragment in fragments:
        assert fragment in info.value.message, f"{fragment!r} not in {info.value.message!r}"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("parquet", "parquet"),
        ("parquet_file", "parquet"),
        ("imagefolder", "imagefolder"),
        ("disk", "disk"),
        ("disk_single", "disk"),
    ],
)
def test_detect_format_recognises_each_local_layout(make_tiny_dataset, fmt, expected):
    assert detect_format(make_tiny_dataset(fmt)) == expected


def test_detect_format_treats_globs_as_parquet_and_unknown_names_as_hub(tiny_parquet):
    assert detect_format(f"{tiny_parquet}/*.parquet") == "parquet"
    assert detect_format("uoft-cs/cifar100") == "hub"


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder", "disk"])
def test_each_format_loads_train_and_validation_splits(make_tiny_dataset, fmt):
    train, eval_ds = load_splits(data_cfg(make_tiny_dataset(fmt)), seed=SEED, num_classes=NUM_CLASSES)
    assert len(train) == SPLIT_SIZES["train"]
    assert len(eval_ds) == SPLIT_SIZES["validation"]
    assert train.column_names == ["image", "label"]


def test_parquet_glob_groups_files_into_splits_by_name(tiny_parquet):
    train, eval_ds = load_splits(data_cfg(f"{tiny_parquet}/*.parquet"), seed=SEED)
    assert (len(train), len(eval_ds)) == (SPLIT_SIZES["train"], SPLIT_SIZES["validation"])


@pytest.mark.parametrize("fmt", ["parquet_file", "disk_single"])
def test_single_file_or_single_dataset_is_the_train_split(make_tiny_dataset, fmt):
    train, eval_ds = load_splits(data_cfg(make_tiny_dataset(fmt), eval_split="none"), seed=SEED)
    assert len(train) == SPLIT_SIZES["train"]
    assert eval_ds is None


def test_explicit_format_overrides_detection(tiny_disk):
    train, _ = load_splits(data_cfg(tiny_disk, format="disk"), seed=SEED)
    assert len(train) == SPLIT_SIZES["train"]


def test_custom_column_names_are_used(make_tiny_dataset):
    path = make_tiny_dataset("parquet", image_column="img", label_column="fine_label")
    cfg = data_cfg(path, image_column="img", label_column="fine_label")
    train, _ = load_splits(cfg, seed=SEED)
    assert train.column_names == ["img", "fine_label"]
    pixels, labels = first_batch(build_dataloaders(cfg, timm_model(), seed=SEED)[0])
    assert pixels.shape == (8, 3, 16, 16)


def test_plain_integer_labels_are_accepted(make_tiny_dataset):
    path = make_tiny_dataset("parquet", class_label=False)
    train, _ = load_splits(data_cfg(path), seed=SEED, num_classes=NUM_CLASSES)
    assert sorted(set(train["label"])) == list(range(NUM_CLASSES))


def test_existing_eval_split_wins_over_eval_fraction(tiny_parquet):
    train, eval_ds = load_splits(data_cfg(tiny_parquet, eval_fraction=0.5), seed=SEED)
    assert (len(train), len(eval_ds)) == (SPLIT_SIZES["train"], SPLIT_SIZES["validation"])


def test_eval_fraction_holds_out_a_stratified_seeded_part_of_train(make_tiny_dataset):
    path = make_tiny_dataset("parquet", splits=("train",))
    cfg = data_cfg(path, eval_fraction=0.25)
    train, eval_ds = load_splits(cfg, seed=SEED)
    assert (len(train), len(eval_ds)) == (36, 12)
    assert sorted(eval_ds["label"]) == sorted(list(range(NUM_CLASSES)) * 3)
    train_ids, eval_ids = image_ids(train), image_ids(eval_ds)
    assert len(train_ids | eval_ids) == 48 and not train_ids & eval_ids
    assert image_ids(load_splits(cfg, seed=SEED)[1]) == eval_ids
    assert image_ids(load_splits(cfg, seed=SEED + 1)[1]) != eval_ids


def test_eval_split_none_disables_evaluation(tiny_parquet, model):
    train_loader, eval_loader = build_dataloaders(data_cfg(tiny_parquet, eval_split="none"), model, seed=SEED)
    assert eval_loader is None
    assert len(train_loader.dataset) == SPLIT_SIZES["train"]


def test_other_named_split_can_be_the_eval_split(make_tiny_dataset):
    path = make_tiny_dataset("parquet", splits=("train", "test"))
    _, eval_ds = load_splits(data_cfg(path, eval_split="test"), seed=SEED)
    assert len(eval_ds) == 16


def test_batches_are_uint8_pixels_normalized_on_the_device_and_int64_labels(tiny_parquet, model):
    from trainer.data.transforms import batch_normalizer

    train_loader, eval_loader = build_dataloaders(data_cfg(tiny_parquet), model, seed=SEED)
    for loader, batch_size in ((train_loader, 8), (eval_loader, 8)):
        pixels, labels = next(iter(loader))
        assert pixels.shape == (batch_size, 3, 16, 16) and pixels.dtype == torch.uint8  # 4x less to copy
        assert labels.shape == (batch_size,) and labels.dtype == torch.int64
        mean, std = loader.dataset.transform.device_normalize
        normalized = batch_normalizer(loader, torch.device("cpu"))(pixels.clone())
        expected = (pixels.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
            1, 3, 1, 1
        )
        torch.testing.assert_close(normalized, expected)
    assert len(train_loader) == SPLIT_SIZES["train"] // 8
    assert model(normalized).shape == (8, NUM_CLASSES)


def test_random_erasing_keeps_normalizing_in_the_workers_as_timm_does(tiny_parquet, model):
    from trainer.data.transforms import batch_normalizer

    loader, _ = build_dataloaders(data_cfg(tiny_parquet, augment={"re_prob": 0.5}), model, seed=SEED)
    pixels, _ = next(iter(loader))
    assert pixels.dtype == torch.float32 and loader.dataset.transform.device_normalize is None
    assert batch_normalizer(loader, torch.device("cpu"))(pixels) is pixels


def test_image_size_defaults_to_the_models_pretrained_input_size(tiny_parquet, model):
    cfg = data_cfg(tiny_parquet, batch_size=2)
    del cfg["image_size"]
    pixels, _ = first_batch(build_dataloaders(cfg, model, seed=SEED)[1])
    assert tuple(pixels.shape[1:]) == model.pretrained_cfg["input_size"]


def test_eval_pipeline_is_deterministic_and_normalised_with_the_models_mean(tiny_parquet, model):
    _, eval_loader = build_dataloaders(data_cfg(tiny_parquet), model, seed=SEED)
    first, second = first_batch(eval_loader)[0], first_batch(eval_loader)[0]
    assert torch.equal(first, second)
    assert first.min() >= -1.0 - 1e-6 and first.max() <= 1.0 + 1e-6  # test_resnet: mean = std = 0.5


def test_patch_embedding_model_defaults_to_the_image_size_it_was_built_for(tiny_parquet):
    model = timm_model("vit_tiny_patch16_224", img_size=32)
    cfg = data_cfg(tiny_parquet)
    del cfg["image_size"]
    pixels, _ = first_batch(build_dataloaders(cfg, model, seed=SEED)[0])
    assert pixels.shape == (8, 3, 32, 32)


def test_image_size_a_fixed_size_vit_cannot_take_is_an_error(tiny_parquet):
    model = timm_model("vit_tiny_patch16_224", img_size=32)
    with raises_recipe_error("data.image_size", "built for 32x32", "model.img_size = 16"):
        build_dataloaders(data_cfg(tiny_parquet, image_size=16), model, seed=SEED)


def test_a_datasets_cache_that_cannot_be_written_names_hf_home(tiny_parquet, tmp_path, monkeypatch):
    import datasets

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", blocker / "datasets")
    with raises_recipe_error("HF_HOME", "cannot be written", "set HF_HOME"):
        load_splits(data_cfg(tiny_parquet), seed=SEED)


def test_eval_image_size_sets_the_eval_pipeline_alone(tiny_parquet, model):
    train, evaluation = build_dataloaders(data_cfg(tiny_parquet, eval_image_size=24), model, seed=SEED)
    assert first_batch(train)[0].shape == (8, 3, 16, 16)
    assert first_batch(evaluation)[0].shape == (8, 3, 24, 24)


def test_eval_image_size_a_fixed_size_vit_cannot_take_is_an_error(tiny_parquet):
    model = timm_model("vit_tiny_patch16_224", img_size=32)
    with raises_recipe_error("data.eval_image_size", "built for 32x32", "drop data.eval_image_size"):
        build_dataloaders(data_cfg(tiny_parquet, image_size=32, eval_image_size=48), model, seed=SEED)


def test_grayscale_images_become_three_channels_for_an_rgb_model(tiny_gray_parquet, model):
    train, _ = load_splits(data_cfg(tiny_gray_parquet), seed=SEED)
    assert train[0]["image"].mode == "L"
    pixels, _ = first_batch(build_dataloaders(data_cfg(tiny_gray_parquet), model, seed=SEED)[0])
    assert pixels.shape == (8, 3, 16, 16)
    assert torch.equal(pixels[:, 0], pixels[:, 1]) and torch.equal(pixels[:, 1], pixels[:, 2])


def test_single_channel_model_gets_single_channel_batches(tiny_parquet):
    model = timm_model(in_chans=1)
    cfg = data_cfg(tiny_parquet, augment={"mean": [0.5], "std": [0.5]})
    pixels, _ = first_batch(build_dataloaders(cfg, model, seed=SEED)[0])
    assert pixels.shape == (8, 1, 16, 16)
    assert model(pixels).shape == (8, NUM_CLASSES)


def test_augment_options_reach_create_transform_and_mean_std_apply_to_eval_too(model):
    augment = {"hflip": 0.0, "scale": [0.5, 1.0], "re_prob": 0.25, "mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}
    train_tf, eval_tf = build_transforms(model, image_size=16, augment=augment)
    train_names = [type(t).__name__ for t in train_tf.transform.transforms]
    assert "RandomHorizontalFlip" not in train_names and "RandomErasing" in train_names
    assert train_tf.transform.transforms[0].scale == (0.5, 1.0)
    for tf in (train_tf, eval_tf):
        normalize = next(t for t in tf.transform.transforms if type(t).__name__ == "Normalize")
        assert list(normalize.mean) == pytest.approx([0.1, 0.2, 0.3])


def test_augment_accepts_every_create_transform_argument_except_the_reserved_ones():
    names = augment_arg_names()
    assert {"auto_augment", "re_prob", "hflip", "color_jitter", "scale", "ratio", "interpolation"} <= set(
        names
    )
    assert "input_size" not in names and "is_training" not in names


def test_train_order_is_reproducible_from_the_seed(tiny_parquet, model):
    def epoch_labels(seed: int) -> list[int]:
        loader = build_dataloaders(data_cfg(tiny_parquet, augment={"hflip": 0.0}), model, seed=seed)[0]
        return [int(y) for _, labels in loader for y in labels]

    assert epoch_labels(3) == epoch_labels(3)
    assert epoch_labels(3) != epoch_labels(4)


def test_building_loaders_does_not_disturb_the_global_rngs(tiny_parquet, model):
    def draws() -> tuple:
        return torch.rand(3).tolist(), random.random()

    torch.manual_seed(5)
    random.seed(5)
    expected = draws()
    torch.manual_seed(5)
    random.seed(5)
    build_dataloaders(data_cfg(tiny_parquet, augment={"re_prob": 1.0}), model, seed=SEED)
    assert draws() == expected


def test_random_augmentation_in_workers_repeats_for_the_same_seed(tiny_parquet, model):
    def first_epoch(seed: int) -> list[torch.Tensor]:
        cfg = data_cfg(tiny_parquet, num_workers=1, eval_split="none", augment={"re_prob": 1.0})
        return [pixels for pixels, _ in build_dataloaders(cfg, model, seed=seed)[0]]

    first, again, other = first_epoch(1), first_epoch(1), first_epoch(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


def test_worker_processes_deliver_the_same_eval_batches(tiny_parquet, model):
    in_process = build_dataloaders(data_cfg(tiny_parquet), model, seed=SEED)[1]
    with_workers = build_dataloaders(data_cfg(tiny_parquet, num_workers=1), model, seed=SEED)[1]
    assert with_workers.persistent_workers
    for (a, la), (b, lb) in zip(in_process, with_workers, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


def epoch_labels(loader, epoch: int, start: int = 0) -> list[list[int]]:
    set_position(loader, epoch, start)
    return [[int(y) for y in labels] for _, labels in loader]


def test_each_epochs_order_is_a_function_of_seed_and_epoch_and_a_resumed_epoch_loads_nothing_before(
    tiny_parquet, model
):
    cfg = data_cfg(tiny_parquet, eval_split="none", augment={"hflip": 0.0})
    loader = build_dataloaders(cfg, model, seed=SEED)[0]
    epoch0, epoch1 = epoch_labels(loader, 0), epoch_labels(loader, 1)
    again = build_dataloaders(cfg, model, seed=SEED)[0]
    assert epoch_labels(again, 1) == epoch1 and epoch0 != epoch1
    assert epoch_labels(again, 1, start=2) == epoch1[2:]  # a resumed epoch starts after what it consumed
    assert len(epoch0) == batches_per_epoch(SPLIT_SIZES["train"], 8) == 6


def test_two_processes_share_each_global_batch_of_the_single_process_order(tiny_parquet, model):
    cfg = data_cfg(tiny_parquet, eval_split="none", augment={"no_aug": True})

    def batches(num_processes: int, rank: int, batch: int) -> list[list[bytes]]:
        loader = build_dataloaders(
            {**cfg, "batch_size": batch}, model, seed=SEED, num_replicas=num_processes, rank=rank
        )[0]
        set_position(loader, 2)
        return [[image.numpy().tobytes() for image in pixels] for pixels, _ in loader]

    single = batches(1, 0, 16)
    rank0, rank1 = batches(2, 0, 8), batches(2, 1, 8)
    assert len(rank0) == len(rank1) == batches_per_epoch(SPLIT_SIZES["train"], 8, num_processes=2) == 3
    assert [sorted(a + b) for a, b in zip(rank0, rank1, strict=True)] == [sorted(s) for s in single]


@pytest.mark.parametrize("num_samples", [45, 48, 50, 64, 70])
@pytest.mark.parametrize(("num_processes", "accumulate"), [(1, 1), (2, 1), (3, 1), (2, 2)])
@pytest.mark.parametrize("drop_last", [True, False])
def test_batches_per_epoch_is_the_global_orders_length(num_samples, num_processes, accumulate, drop_last):
    from trainer.data.order import map_style_sampler

    sampler = map_style_sampler(
        num_samples,
        seed=0,
        batch_size=8,
        num_processes=num_processes,
        accumulate=accumulate,
        drop_last=drop_last,
    )
    assert (
        len(sampler)
        == len(list(sampler))
        == batches_per_epoch(
            num_samples, 8, num_processes=num_processes, drop_last=drop_last, accumulate=accumulate
        )
    )


def test_loader_defaults_leave_a_core_per_process_for_the_step(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    options = loader_options({"path": "x", "batch_size": 1})
    assert options["num_workers"] == max(0, min(4, cpus - 1))
    assert options["persistent_workers"] == (options["num_workers"] > 0)
    assert options["pin_memory"] == torch.cuda.is_available()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert loader_options({"path": "x", "batch_size": 1})["num_workers"] == max(0, min(4, cpus // 2 - 1))


def test_validate_accepts_a_full_section():
    validate_data_cfg(
        {
            "path": "data/digits",
            "format": "parquet",
            "image_column": "image",
            "label_column": "label",
            "train_split": "train",
            "eval_split": "validation",
            "eval_fraction": 0.1,
            "image_size": 32,
            "batch_size": 64,
            "eval_batch_size": 128,
            "num_workers": 2,
            "pin_memory": False,
            "persistent_workers": True,
            "prefetch_factor": 4,
            "drop_last": False,
            "augment": {"auto_augment": "rand-m9-mstd0.5", "re_prob": 0.25, "scale": [0.5, 1.0]},
        }
    )
    assert "augment" in DATA_KEYS


@pytest.mark.parametrize(
    ("section", "key", "fragments"),
    [
        ({"batch_size": 8}, "data.path", ("required",)),
        ({"path": "x"}, "data.batch_size", ("required",)),
        ({"path": "x", "batch_size": 0}, "data.batch_size", (">= 1", "0")),
        ({"path": "x", "batch_size": 8, "batch_sise": 8}, "data.batch_sise", ("did you mean 'batch_size'",)),
        ({"path": "x", "batch_size": 8, "format": "parquett"}, "data.format", ("did you mean 'parquet'",)),
        ({"path": "x", "batch_size": 8, "eval_fraction": 1.5}, "data.eval_fraction", ("must be < 1.0",)),
        (
            {"path": "x", "batch_size": 8, "eval_fraction": 0.1, "eval_split": "none"},
            "data.eval_fraction",
            ("'none'",),
        ),
        (
            {"path": "x", "batch_size": 8, "num_workers": 0, "persistent_workers": True},
            "data.persistent_workers",
            ("num_workers",),
        ),
        (
            {"path": "x", "batch_size": 8, "num_workers": 0, "prefetch_factor": 2},
            "data.prefetch_factor",
            ("num_workers",),
        ),
        ({"path": "x", "batch_size": 8, "pin_memory": "yes"}, "data.pin_memory", ("true or false",)),
        ({"path": "x", "batch_size": 8, "image_size": 32.5}, "data.image_size", ("integer",)),
        ({"path": "x", "batch_size": 8, "format": "parquet", "name": "cfg"}, "data.name", ("hub",)),
        (
            {"path": "x", "batch_size": 8, "augment": {"re_porb": 0.2}},
            "data.augment.re_porb",
            ("did you mean 're_prob'",),
        ),
        (
            {"path": "x", "batch_size": 8, "augment": {"input_size": [3, 8, 8]}},
            "data.augment.input_size",
            ("data.image_size",),
        ),
    ],
)
def test_static_errors_name_the_key(section, key, fragments):
    with raises_recipe_error(key, *fragments):
        validate_data_cfg(section)


def test_missing_local_path_is_an_error_on_data_path(tmp_path, model):
    with raises_recipe_error("data.path", "no such file or directory"):
        build_dataloaders(data_cfg(str(tmp_path / "nope" / "../x/")), model, seed=SEED)


def test_unreachable_hub_name_is_an_error_on_data_path(model):
    with raises_recipe_error("data.path", "hub", "no-such-user/no-such-dataset"):
        build_dataloaders(data_cfg("no-such-user/no-such-dataset"), model, seed=SEED)


def test_unknown_train_split_lists_the_available_ones(tiny_parquet, model):
    with raises_recipe_error("data.train_split", "'trian'", "did you mean 'train'", "train, validation"):
        build_dataloaders(data_cfg(tiny_parquet, train_split="trian"), model, seed=SEED)


def test_absent_eval_split_suggests_eval_fraction_or_none(make_tiny_dataset, model):
    path = make_tiny_dataset("parquet", splits=("train", "test"))
    with raises_recipe_error("data.eval_split", "'validation'", "available: train, test", "eval_fraction"):
        build_dataloaders(data_cfg(path), model, seed=SEED)


@pytest.mark.parametrize(
    ("override", "key", "fragments"),
    [
        (
            {"image_column": "img"},
            "data.image_column",
            ("'img'", "did you mean 'image'", "columns: image, label"),
        ),
        ({"label_column": "labels"}, "data.label_column", ("'labels'", "did you mean 'label'")),
    ],
)
def test_missing_column_lists_the_columns(tiny_parquet, model, override, key, fragments):
    with raises_recipe_error(key, *fragments):
        build_dataloaders(data_cfg(tiny_parquet, **override), model, seed=SEED)


def test_labels_beyond_num_classes_report_max_label_and_num_classes(tiny_parquet):
    with raises_recipe_error("data.label_column", "labels up to 3", "num_classes = 2"):
        build_dataloaders(data_cfg(tiny_parquet), timm.create_model("test_resnet", num_classes=2), seed=SEED)


def test_negative_labels_are_an_error(tmp_path, model, tiny_dataset_dict):
    dataset = tiny_dataset_dict(class_label=False)
    dataset["train"] = dataset["train"].map(lambda row: {"label": row["label"] - 1})
    dataset.save_to_disk(str(tmp_path / "neg"))
    with raises_recipe_error("data.label_column", "negative"):
        build_dataloaders(data_cfg(str(tmp_path / "neg")), model, seed=SEED)


def test_non_integer_labels_are_an_error(tmp_path, model, tiny_dataset_dict):
    dataset = tiny_dataset_dict(class_label=False)
    dataset = dataset.cast_column("label", Value("string"))
    dataset.save_to_disk(str(tmp_path / "str"))
    with raises_recipe_error("data.label_column", "integer class ids"):
        build_dataloaders(data_cfg(str(tmp_path / "str")), model, seed=SEED)


def test_empty_split_is_an_error(tmp_path, model, tiny_dataset_dict):
    dataset = tiny_dataset_dict()
    dataset["validation"] = dataset["validation"].select([]).flatten_indices()
    dataset.save_to_disk(str(tmp_path / "empty"), num_shards={"train": 1, "validation": 1})
    with raises_recipe_error("data.eval_split", "'validation'", "empty"):
        build_dataloaders(data_cfg(str(tmp_path / "empty")), model, seed=SEED)


def test_empty_image_folder_is_an_error_on_data_path(tmp_path, model):
    (tmp_path / "images").mkdir()
    with raises_recipe_error("data.path", "imagefolder"):
        build_dataloaders(data_cfg(str(tmp_path / "images")), model, seed=SEED)


def test_batch_larger_than_train_set_is_an_error(tiny_parquet, model):
    with raises_recipe_error("data.batch_size", "64", "48 training samples"):
        build_dataloaders(data_cfg(tiny_parquet, batch_size=64), model, seed=SEED)


def test_augment_value_rejected_by_timm_is_an_error_on_data_augment(tiny_parquet, model):
    with raises_recipe_error("data.augment", "create_transform"):
        build_dataloaders(data_cfg(tiny_parquet, augment={"auto_augment": "nonsense-m9"}), model, seed=SEED)


def test_mean_with_wrong_channel_count_is_an_error(tiny_parquet, model):
    with raises_recipe_error("data.augment.mean", "3"):
        build_dataloaders(data_cfg(tiny_parquet, augment={"mean": [0.1, 0.2]}), model, seed=SEED)


def test_non_image_column_is_an_error(tiny_parquet, model):
    with raises_recipe_error("data.image_column", "'label'"):
        build_dataloaders(data_cfg(tiny_parquet, image_column="label"), model, seed=SEED)


def test_quickstart_digits_load_offline_with_ten_classes(digits_path):
    train, eval_ds = load_splits(data_cfg(digits_path), seed=SEED, num_classes=10)
    assert (len(train), len(eval_ds)) == (1438, 359)
    assert train.features["label"].names == [str(d) for d in range(10)]
    assert sorted(set(eval_ds["label"])) == list(range(10))
    image = train[0]["image"]
    assert (image.mode, image.size) == ("L", (32, 32))


def test_quickstart_digits_feed_a_timm_model_at_32_pixels(digits_path):
    model = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    train_loader, eval_loader = build_dataloaders(
        data_cfg(digits_path, batch_size=64, image_size=32), model, seed=0
    )
    pixels, labels = first_batch(train_loader)
    assert pixels.shape == (64, 3, 32, 32) and labels.max() < 10
    assert len(train_loader) == 1438 // 64 and len(eval_loader) == -(-359 // 64)


def test_quickstart_files_are_small_enough_to_commit(digits_path):
    sizes = [f.stat().st_size for f in Path(digits_path).glob("*.parquet")]
    assert len(sizes) == 2 and sum(sizes) < 2_000_000


def test_a_process_whose_data_workers_outlive_their_loader_still_exits(tiny_parquet):
    """The workers ignore SIGTERM (a signal to every process must not kill them before the checkpoint), so
    multiprocessing's exit handler cannot end them by SIGTERM: the trainer's own handler does, first."""
    import subprocess
    import sys

    code = (
        "import timm\n"
        "from trainer.data import build_dataloaders\n"
        "model = timm.create_model('test_resnet', num_classes=4)\n"
        f"cfg = {{'path': {tiny_parquet!r}, 'batch_size': 8, 'image_size': 16, 'num_workers': 1}}\n"
        "train, _ = build_dataloaders(cfg, model, seed=0)\n"
        "KEPT = iter(train); next(KEPT)  # persistent workers, alive at exit\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
