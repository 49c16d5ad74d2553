"""The data path at scale against timm's: start-up on a large image-folder tree (per file), and loader
throughput on real JPEGs with the same 224 px training pipeline, both in one process."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def make_tree(root: Path, files: int, classes: int = 100) -> None:
    """`files` empty .JPEG files in `classes` class folders: what a scan sees of ImageNet's layout."""
    per_class = files // classes
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"n{c:08d}_{i}.JPEG").touch()


def make_jpegs(root: Path, images: int, classes: int = 10, seed: int = 0) -> float:
    """`images` 500x375 JPEGs (quality 85, ~50 KiB: ImageNet's typical size) in class folders; mean KiB."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:375, 0:500]
    sizes = []
    for i in range(images):
        c = i % classes
        base = np.stack([x * 0.5 + c * 20, y * 0.6, (x + y) * 0.3], -1) % 255
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = root / f"c{c}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=85)
        sizes.append(path.stat().st_size)
    return sum(sizes) / len(sizes) / 1024


def startup(files: int = 200_000) -> dict[str, Any]:
    """Seconds per file to list a class-folder tree: timm's create_dataset scan, our first start (index
    built and cached) and our second start (cached index checked against the directories' mtimes)."""
    import datasets
    from timm.data import create_dataset

    from trainer.data.sources.folder import folder_dataset_dict

    with tempfile.TemporaryDirectory(prefix="bench_tree_") as tmp:
        root = Path(tmp) / "train"
        make_tree(root, files)
        datasets.config.HF_DATASETS_CACHE = str(Path(tmp) / "cache")
        times = {}
        start = time.perf_counter()
        assert len(create_dataset("", root=str(root))) == files
        times["timm_scan"] = time.perf_counter() - start
        for name in ("ours_first_start", "ours_second_start"):
            start = time.perf_counter()
            assert len(folder_dataset_dict(root)["train"]) == files
            times[name] = time.perf_counter() - start
    return {
        "files": files,
        "ms_per_file": {k: round(1e3 * v / files, 5) for k, v in times.items()},
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "first_start_vs_timm": round(times["ours_first_start"] / times["timm_scan"], 3),
    }


def throughput(
    images: int = 1000, workers: tuple[int, ...] = (1, 2), epochs: int = 3
) -> list[dict[str, Any]]:
    """Images/s of our train loader (uint8 out: the loop normalizes on the device) and timm's
    `create_loader` (prefetcher off: normalized float out) on the same JPEGs, 224 px RandomResizedCrop +
    flip + color jitter, bicubic, batch 64; epochs alternate, the first (workers starting) is dropped."""
    import torch
    from timm.data import create_dataset, create_loader

    from trainer.data import build_dataloaders
    from trainer.model import build_model

    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_jpegs_") as tmp:
        kib = make_jpegs(Path(tmp) / "train", images)
        model = build_model({"name": "resnet18", "num_classes": 10})
        for n in workers:
            cfg = {"path": tmp, "batch_size": 64, "num_workers": n, "eval_split": "none", "image_size": 224}
            ours = build_dataloaders(cfg, model, seed=0)[0]
            interpolation = ours.dataset.transform.transform.transforms[0].interpolation
            theirs = create_loader(
                create_dataset("", root=os.path.join(tmp, "train")),
                input_size=(3, 224, 224),
                batch_size=64,
                is_training=True,
                use_prefetcher=False,
                num_workers=n,
                persistent_workers=n > 0,
                interpolation=getattr(interpolation, "value", str(interpolation)),
            )
            rates: dict[str, list[float]] = {"ours": [], "timm": []}
            for epoch in range(epochs):
                for name, loader in (("ours", ours), ("timm", theirs)):
                    if name == "ours":
                        loader.dataset.set_epoch(epoch)  # its augmentation epoch (the loader is unprepared)
                    start, seen = time.perf_counter(), 0
                    for _, labels in loader:
                        seen += len(labels)
                    if epoch:
                        rates[name].append(seen / (time.perf_counter() - start))
            medians = {k: statistics.median(v) for k, v in rates.items()}
            results.append(
                {
                    "num_workers": n,
                    "images": images,
                    "mean_kib": round(kib, 1),
                    "images_per_sec": {k: round(v, 1) for k, v in medians.items()},
                    "ratio_vs_timm": round(medians["ours"] / medians["timm"], 3),
                }
            )
            del ours, theirs
    return results
