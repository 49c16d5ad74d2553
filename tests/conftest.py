"""Shared fixtures: tiny, learnable image-classification datasets on disk in every format `[data]` reads."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

# Nothing may download during tests; set before huggingface_hub / datasets are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

SHARED_RUNS = {
    ("test_seeding", "uninterrupted"),
    ("test_reliability", "reference"),
    ("test_streaming", "two_processes"),
    ("test_export", "quickstart"),
    ("test_bad_inputs", "process_results"),
    ("test_evaluate_script", "vit_run"),
    ("test_plot_metrics", "two_runs"),
    ("test_launch", "reference"),
    ("test_slurm", "uninterrupted"),
    ("test_elastic", "stopped_on_two"),
}
"""(test module, module fixture) pairs whose fixture is a training run shared by several tests: under
pytest-xdist those tests go to one worker (an xdist_group), so that the run is made once."""

NUM_CLASSES = 4
IMAGE_SIZE = 16
SPLIT_SIZES = {"train": 48, "validation": 16}
CLASS_NAMES = ["north_west", "north_east", "south_west", "south_east"]


def tiny_images(count: int, *, mode: str = "RGB", seed: int = 0) -> tuple[list[Image.Image], list[int]]:
    """`count` noisy 16x16 images, balanced over 4 classes; class k has a bright k-th quadrant (learnable)."""
    rng = np.random.default_rng(seed)
    labels = [i % NUM_CLASSES for i in range(count)]
    half = IMAGE_SIZE // 2
    images = []
    for label in labels:
        pixels = rng.integers(0, 96, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        row, col = divmod(label, 2)
        pixels[row * half : (row + 1) * half, col * half : (col + 1) * half] += 150
        images.append(Image.fromarray(pixels, mode="RGB").convert(mode))
    return images, labels


def make_dataset_dict(
    *,
    mode: str = "RGB",
    splits: tuple[str, ...] = ("train", "validation"),
    image_column: str = "image",
    label_column: str = "label",
    class_label: bool = True,
):
    """An in-memory DatasetDict of PNG-encoded tiny images with ClassLabel (or plain int64) labels."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from datasets import Image as ImageFeature

    label_feature = ClassLabel(names=CLASS_NAMES) if class_label else Value("int64")
    features = Features({image_column: ImageFeature(), label_column: label_feature})
    result = {}
    for index, split in enumerate(splits):
        images, labels = tiny_images(SPLIT_SIZES.get(split, 16), mode=mode, seed=index)
        encoded = [{"bytes": _png(img), "path": None} for img in images]
        result[split] = Dataset.from_dict({image_column: encoded, label_column: labels}, features=features)
    return DatasetDict(result)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_tiny_dataset(root: Path, fmt: str, **kwargs) -> str:
    """Write a tiny dataset under `root` and return the `data.path` that reads it.

    fmt: "imagefolder" (split/class/N.png; one split is written without the split folder), "disk"
    (DatasetDict.save_to_disk), "disk_single" (Dataset.save_to_disk of the first split), "parquet"
    (a directory of <split>.parquet), "parquet_file" (one <split>.parquet file, the first split).
    """
    dataset = make_dataset_dict(**kwargs)
    splits = list(dataset)
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "imagefolder":
        image_column, label_column = dataset[splits[0]].column_names
        names = dataset[splits[0]].features[label_column].names
        for split in splits:
            base = root / split if len(splits) > 1 else root
            for i, row in enumerate(dataset[split]):
                folder = base / names[row[label_column]]
                folder.mkdir(parents=True, exist_ok=True)
                row[image_column].save(folder / f"{i:03d}.png")
        return str(root)
    if fmt == "disk":
        dataset.save_to_disk(str(root))
        return str(root)
    if fmt == "disk_single":
        dataset[splits[0]].save_to_disk(str(root))
        return str(root)
    if fmt in ("parquet", "parquet_file"):
        for split in splits:
            dataset[split].to_parquet(str(root / f"{split}.parquet"))
        return str(root / f"{splits[0]}.parquet") if fmt == "parquet_file" else str(root)
    raise ValueError(f"unknown tiny dataset format {fmt!r}")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The slow end-to-end tests first: pytest-xdist hands out tests in this order, so the short ones fill the
    # workers' last minutes instead of one long run keeping a worker busy after the others are done.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        for fixture in item.fixturenames:
            if (module, fixture) in SHARED_RUNS:
                item.add_marker(pytest.mark.xdist_group(f"{module}.{fixture}"))
                break


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_worker() -> Iterator[None]:
    """Each pytest-xdist worker computes on one thread: the workers share the cores (end-to-end runs in
    subprocesses are single-threaded too, see runs.train_env)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _isolated_datasets_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep `load_dataset`'s arrow cache (and that of spawned scripts) out of the user's ~/.cache."""
    import datasets

    cache = tmp_path_factory.mktemp("hf_datasets_cache")
    previous_env, previous_config = os.environ.get("HF_DATASETS_CACHE"), datasets.config.HF_DATASETS_CACHE
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    datasets.config.HF_DATASETS_CACHE = cache
    yield
    datasets.config.HF_DATASETS_CACHE = previous_config
    if previous_env is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = previous_env


@pytest.fixture(scope="session")
def make_tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Factory `make(fmt, **options) -> data.path`; writes each variant once per session."""
    made: dict[tuple, str] = {}

    def make(fmt: str = "parquet", **kwargs) -> str:
        key = (fmt, *sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
        if key not in made:
            made[key] = write_tiny_dataset(tmp_path_factory.mktemp(f"tiny_{fmt}"), fmt, **kwargs)
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_dataset_dict() -> Callable[..., object]:
    """Factory for the in-memory DatasetDict behind every tiny dataset (see make_dataset_dict)."""
    return make_dataset_dict


@pytest.fixture(scope="session")
def tiny_parquet(make_tiny_dataset: Callable[..., str]) -> str:
    """Directory with train.parquet (48 RGB 16x16 images, 4 classes) and validation.parquet (16)."""
    return make_tiny_dataset("parquet")


@pytest.fixture(scope="session")
def tiny_imagefolder(make_tiny_dataset: Callable[..., str]) -> str:
    """Image folder train/<class>/*.png and validation/<class>/*.png (RGB PNGs)."""
    return make_tiny_dataset("imagefolder")


@pytest.fixture(scope="session")
def tiny_disk(make_tiny_dataset: Callable[..., str]) -> str:
    """A DatasetDict (train, validation) written with save_to_disk."""
    return make_tiny_dataset("disk")


@pytest.fixture(scope="session")
def tiny_gray_parquet(make_tiny_dataset: Callable[..., str]) -> str:
    """Like tiny_parquet, but single-channel ("L") images, as in the digits quickstart."""
    return make_tiny_dataset("parquet", mode="L")


@pytest.fixture(scope="session")
def digits_path() -> str:
    """The committed quickstart dataset (data/digits), as an absolute path."""
    return str(Path(__file__).resolve().parent.parent / "data" / "digits")
