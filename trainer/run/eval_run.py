"""Evaluate weights on a recipe's eval split without training (scripts/evaluate.py; timm's validate.py).

The set-up is the loop's own: the recipe's Accelerator (`make_accelerator`), model (`build_model`), data
(`build_dataloaders`: the eval pipeline and split the run used) and `evaluate`, so the numbers equal the
loop's eval record for the same weights and processes. Several processes (`accelerate launch`, torchrun)
each evaluate a shard; `gather_for_metrics` counts every sample once.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.errors import RecipeError
from trainer.outputs.export import EMA_WEIGHTS_FILE, RECIPE_FILE, WEIGHTS_FILE
from trainer.recipe.load import Recipe, load_recipe


@dataclass
class EvalTarget:
    """What to evaluate: a recipe and the weights (None: the recipe's own initial weights)."""

    recipe: Recipe
    weights: Path | None


def resolve_target(
    path: str | Path, overrides: list[str], weights: str | None = None, ema: bool = False
) -> EvalTarget:
    """A run directory (its recipe.toml and model.safetensors, or model_ema.safetensors with `ema`) or a
    recipe (with `weights`, or the initial weights it names: model.weights, pretrained, a model folder)."""
    path = Path(path)
    if ema and weights is not None:
        raise RecipeError("--ema", "picks the run's model_ema.safetensors; with --weights FILE leave it out")
    if path.is_dir():
        if not (path / RECIPE_FILE).is_file():
            raise RecipeError("run_dir", f"not a run directory: it has no {RECIPE_FILE}", file=str(path))
        recipe = load_recipe(path / RECIPE_FILE, overrides)
        if weights is None:
            name = EMA_WEIGHTS_FILE if ema else WEIGHTS_FILE
            if not (path / name).is_file():
                hint = " (the run had no [ema])" if ema else " (training has not finished: see checkpoints/)"
                raise RecipeError("weights", f"the run directory has no {name}{hint}", file=str(path))
            return EvalTarget(recipe, path / name)
        return EvalTarget(recipe, Path(weights))
    recipe = load_recipe(path, overrides)
    if ema:
        raise RecipeError("--ema", "needs a run directory (or pass --weights FILE)", file=str(path))
    if weights is None:
        from trainer.model import initial_weights

        with recipe.blame():
            if initial_weights(recipe.cfg["model"]) is None:
                raise RecipeError(
                    "model", "has no weights to evaluate: pass --weights FILE, or the run directory instead"
                )
        return EvalTarget(recipe, None)
    return EvalTarget(recipe, Path(weights))


def evaluate_target(target: EvalTarget, amp: bool = False) -> dict[str, Any]:
    """Loss, top-1 and top-5 of the target's weights on the recipe's eval split, on every process launched;
    returns the same dict on each (metrics as in metrics.jsonl's eval records, plus what was evaluated)."""
    from accelerate.utils import set_seed

    from trainer.data import build_dataloaders, close_workers
    from trainer.model import build_model, load_exact
    from trainer.run.build import make_accelerator
    from trainer.run.evaluate import evaluate
    from trainer.run.runtime import resolve_precision

    recipe = target.recipe
    cfg = recipe.cfg
    accelerator = make_accelerator(recipe, resolve_precision(cfg["train"], amp))
    try:
        set_seed(cfg["seed"])
        with recipe.blame():
            model_cfg = dict(cfg["model"])
            if target.weights is not None:  # the architecture only; the file is loaded as it is
                model_cfg.pop("weights", None)
                model_cfg["pretrained"] = False
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON result
                model = build_model(model_cfg)
            if target.weights is not None:
                load_exact(model, target.weights, key="weights")
            with accelerator.main_process_first():
                _, eval_dl = build_dataloaders(
                    cfg["data"],
                    model,
                    seed=cfg["seed"],
                    num_replicas=accelerator.num_processes,
                    rank=accelerator.process_index,
                )
            if eval_dl is None:
                raise RecipeError(
                    "data.eval_split",
                    "is 'none': nothing to evaluate (--set data.eval_split=NAME picks a split)",
                )
        samples = len(eval_dl.dataset)
        if cfg["model"].get("compile"):
            model = torch.compile(model)
        model = accelerator.prepare(model)
        eval_dl = accelerator.prepare(eval_dl)
        metrics = evaluate(model, eval_dl, accelerator)
        close_workers(eval_dl)
    finally:
        accelerator.end_training()
    return {
        **metrics,
        "samples": samples,
        "split": cfg["data"]["eval_split"],
        "weights": str(target.weights) if target.weights is not None else _initial(cfg["model"]),
        "recipe": str(recipe.path),
        "processes": accelerator.num_processes,
        "precision": accelerator.mixed_precision,
    }


def _initial(model_cfg: dict[str, Any]) -> str:
    from trainer.model import initial_weights

    source = initial_weights(model_cfg)
    return source.label if source is not None else "random"
