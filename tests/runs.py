"""Helpers for end-to-end tests: a tiny learnable dataset, recipes around it, and runs of scripts/train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "scripts" / "train.py"

SGD = 'type = "SGD"\nlr = 0.1\nmomentum = 0.9\nweight_decay = 1e-4'


def make_dataset(path: Path, n_train: int = 64, n_eval: int = 16, size: int = 16, classes: int = 4) -> Path:
    """A small learnable image dataset (one noisy colour per class), written with save_to_disk."""
    import numpy as np
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(classes, 3))

    def split(n: int) -> Dataset:
        labels = [i % classes for i in range(n)]
        images = []
        for label in labels:
            pixels = np.clip(colours[label] + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype("uint8")
            images.append(PILImage.fromarray(pixels))
        features = Features({"image": Image(), "label": ClassLabel(num_classes=classes)})
        return Dataset.from_dict({"image": images, "label": labels}, features=features)

    DatasetDict({"train": split(n_train), "validation": split(n_eval)}).save_to_disk(str(path))
    return path


def recipe_text(dataset: Path, output_dir: Path, **overrides: str) -> str:
    sections = {
        "model": 'name = "test_vit"\nnum_classes = 4\nimg_size = 16\npatch_size = 4',
        "data": f'path = "{dataset}"\nbatch_size = 8\nnum_workers = 0\naugment = {{ no_aug = true }}',
        "train": "epochs = 2\nlog_every = 1",
        "optimizer": 'type = "AdamW"\nlr = 1e-3\nweight_decay = 0.05',
        "checkpoint": "interval = 1\nmax_keep = -1",
    }
    sections.update(overrides)
    body = "\n\n".join(f"[{name}]\n{text}" for name, text in sections.items() if text is not None)
    return f'seed = 0\noutput_dir = "{output_dir}"\n\n{body}\n'


def train_command(recipe: Path, *args: str, nproc: int = 1) -> list[str]:
    """The command line of scripts/train.py, under torchrun when `nproc` > 1."""
    if nproc == 1:
        return [sys.executable, str(TRAIN), str(recipe), *args]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--standalone",
        str(TRAIN),
        str(recipe),
        *args,
    ]


def train_env() -> dict[str, str]:
    """Offline, one thread per process, and no launcher variables leaking in from the parent."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def run(recipe: Path, *args: str, nproc: int = 1, expect: int = 0) -> subprocess.CompletedProcess:
    """Run scripts/train.py to completion and check its exit code."""
    proc = subprocess.run(
        train_command(recipe, *args, nproc=nproc),
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_run(tmp_path: Path, dataset: Path, name: str, *args: str, nproc: int = 1, **sections: str) -> Path:
    out = tmp_path / name
    recipe = tmp_path / f"{name}.toml"
    recipe.write_text(recipe_text(dataset, out, **sections))
    run(recipe, *args, nproc=nproc)
    return out


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=1e-5, msg=k)
