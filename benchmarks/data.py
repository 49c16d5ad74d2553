"""The data path: the fraction of step time spent waiting for the next batch, per DataLoader setting."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataWait:
    """Per-step seconds waiting for the next batch and in total, after `skip` warm-up steps."""

    setting: dict[str, Any]
    first_batch_s: float
    wait_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)

    def summary(self, batch_size: int) -> dict[str, Any]:
        wait, total = sum(self.wait_s), sum(self.step_s)
        return {
            **self.setting,
            "steps": len(self.step_s),
            "first_batch_s": round(self.first_batch_s, 3),
            "wait_fraction": round(wait / total, 4),
            "median_wait_ms": round(statistics.median(self.wait_s) * 1e3, 2),
            "median_step_ms": round(statistics.median(self.step_s) * 1e3, 2),
            "samples_per_sec": round(batch_size * len(self.step_s) / total, 1),
        }


def data_wait(recipe_path: str, settings: list[dict[str, Any]], epochs: int, skip: int) -> dict[str, Any]:
    """Train `epochs` epochs of the recipe's dataset through the real datasets + transforms + DataLoader
    path, set up by the loop's own `build_run`, per loader setting (recipe overrides of `[data]`); time the
    wait for each batch."""
    import torch
    import torch.nn.functional as F
    from accelerate.utils import set_seed

    from trainer.data import loader_options, set_position
    from trainer.data.transforms import batch_normalizer
    from trainer.recipe.load import load_recipe
    from trainer.run.build import build_run, make_accelerator

    accelerator = None
    results = []
    for setting in settings:
        overrides = [f"data.{k}={json.dumps(v)}" for k, v in setting.items()] + ['data.eval_split="none"']
        recipe = load_recipe(recipe_path, overrides)
        cfg = recipe.cfg
        accelerator = accelerator or make_accelerator(recipe, cfg["train"]["precision"])
        set_seed(cfg["seed"])
        run = build_run(recipe, accelerator)
        model, optimizer, train_dl = run.model, run.optimizer, run.train_dl
        normalize = batch_normalizer(train_dl, accelerator.device)  # uint8 batches, as the loop does
        model.train()
        record = DataWait(
            {**loader_options(cfg["data"]), "prefetch_factor": setting.get("prefetch_factor")}, 0.0
        )
        step = 0
        for epoch in range(epochs):
            set_position(train_dl, epoch)
            batches = iter(train_dl)
            while True:
                t0 = time.perf_counter()
                try:
                    images, labels = next(batches)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                loss = F.cross_entropy(model(normalize(images)), labels)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss.item()
                t2 = time.perf_counter()
                if step == 0:
                    record.first_batch_s = t1 - t0
                elif step >= skip:
                    record.wait_s.append(t1 - t0)
                    record.step_s.append(t2 - t0)
                step += 1
        # shut this setting's persistent workers down before the next one starts its own
        del run, model, optimizer, train_dl, batches
        accelerator.free_memory()
        results.append(record.summary(cfg["data"]["batch_size"]))
    return {
        "recipe": recipe_path,
        "model": cfg["model"]["name"],
        "batch_size": cfg["data"]["batch_size"],
        "image_size": cfg["data"].get("image_size"),
        "epochs": epochs,
        "torch_threads": torch.get_num_threads(),
        "settings": results,
    }


def seeding_cost(recipe_path: str, workers: list[int], rounds: int = 3) -> list[dict[str, Any]]:
    """Loader images/s with each sample's augmentation seeded from (seed, epoch, index) against the same
    loader unseeded, per worker count: the cost of exact resume. Epochs of the two alternate (interleaved
    rounds, persistent workers warmed by one epoch first); the ratio is of the medians."""
    import torch

    from trainer.data import build_dataloaders
    from trainer.model import build_model
    from trainer.recipe.load import load_recipe

    recipe = load_recipe(recipe_path, ['data.eval_split="none"'])
    model = build_model(recipe.cfg["model"])
    results = []
    for n in workers:
        cfg = {**recipe.cfg["data"], "num_workers": n}
        loaders = {"seeded": build_dataloaders(cfg, model, seed=0)[0]}
        loaders["unseeded"] = build_dataloaders(cfg, model, seed=0)[0]
        loaders["unseeded"].dataset.seed = None  # before its workers start: they copy the dataset
        rates: dict[str, list[float]] = {name: [] for name in loaders}
        for epoch in range(rounds + 1):
            for name, loader in loaders.items():
                loader.dataset.set_epoch(epoch)
                start, images = time.perf_counter(), 0
                for _, labels in loader:
                    images += len(labels)
                if epoch:  # the first epoch starts the workers
                    rates[name].append(images / (time.perf_counter() - start))
        medians = {name: statistics.median(r) for name, r in rates.items()}
        results.append(
            {
                "num_workers": n,
                "images_per_sec": {name: round(m, 1) for name, m in medians.items()},
                "ratio": round(medians["seeded"] / medians["unseeded"], 4),
                "torch_threads": torch.get_num_threads(),
            }
        )
        del loaders
    return results


def recommend_loader(
    settings: list[dict[str, Any]], max_wait: float = 0.05, tolerance: float = 0.03
) -> dict[str, Any]:
    """Among settings that wait at most `max_wait` of the step (all, if none does), the fewest workers
    whose throughput is within `tolerance` of the best one's."""
    calm = [s for s in settings if s["wait_fraction"] <= max_wait] or settings
    best = max(s["samples_per_sec"] for s in calm)
    good = [s for s in calm if s["samples_per_sec"] >= best * (1 - tolerance)]
    return min(good, key=lambda s: (s["num_workers"], s.get("prefetch_factor") or 0))
