"""Write the quickstart dataset: scikit-learn's 8x8 digits as 32x32 PNGs in train/validation parquet files.

Run once, from the repository root: `python scripts/make_digits.py [--out data/digits]`. Needs scikit-learn
(a dev-time tool only; the trainer reads the parquet files with `datasets`). No download: the digits ship
inside scikit-learn. The output is deterministic for a given scikit-learn/pyarrow version.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
VALIDATION_FRACTION = 0.2
SEED = 0
CLASS_NAMES = [str(d) for d in range(10)]


def digit_png(pixels: np.ndarray, size: int = IMAGE_SIZE) -> bytes:
    """One 8x8 digit (values 0..16) as a `size`x`size` grayscale PNG; nearest keeps pixels crisp blocks."""
    gray = np.rint(pixels * (255 / 16)).astype(np.uint8)
    image = Image.fromarray(gray, mode="L").resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split holding out `fraction` of every class (rounded) for validation."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held_out.append(members[: round(len(members) * fraction)])
    validation = np.sort(np.concatenate(held_out))
    train = np.setdiff1d(np.arange(len(labels)), validation)
    return rng.permutation(train), rng.permutation(validation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/digits"), help="output directory")
    args = parser.parse_args()

    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=CLASS_NAMES)})
    args.out.mkdir(parents=True, exist_ok=True)
    for split, indices in zip(
        ("train", "validation"), stratified_split(labels, VALIDATION_FRACTION, SEED), strict=True
    ):
        rows = {
            "image": [{"bytes": digit_png(digits.images[i]), "path": None} for i in indices],
            "label": labels[indices].tolist(),
        }
        path = args.out / f"{split}.parquet"
        Dataset.from_dict(rows, features=features).to_parquet(str(path))
        print(f"{path}: {len(indices)} images, {path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
