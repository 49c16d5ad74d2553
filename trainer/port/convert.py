"""The port: read the config, map each part, translate custom_keys on the timm model, validate the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import RecipeError
from trainer.port.classifier import ClassifierPort, map_classifier
from trainer.port.config import Source, read_config
from trainer.port.data import map_data
from trainer.port.freeze import freeze_rules
from trainer.port.names import mmpretrain_names, report_bias_differences, report_timm_only
from trainer.port.optim import LAYER_DECAY_VERIFIED, OptimPort, map_optim_wrapper
from trainer.port.report import Report
from trainer.port.rules import translate_custom_keys
from trainer.port.runtime import RuntimePort, map_runtime
from trainer.port.schedule import TrainingPort, map_training


@dataclass(frozen=True)
class PortOptions:
    """Command-line choices: --model, --data, --scale-lr-to."""

    model: str | None = None
    data: str | None = None
    scale_lr_to: int | None = None


@dataclass
class Ported:
    """The recipe as plain data, what did not map, and the source it came from."""

    recipe: dict[str, Any]
    report: Report
    source: Source
    timm_names: list[str] = field(default_factory=list)
    mmpretrain_names: dict[str, str] | None = None


def port_config(path: str | Path, options: PortOptions = PortOptions()) -> Ported:
    """Port the MMPretrain config at `path`; RecipeError (one line, naming the config key) if it cannot."""
    source = read_config(path)
    report = Report()
    try:
        recipe, names, mm_names = _port(source.cfg, options, report)
    except RecipeError as err:
        if err.file is None:
            err.file = str(source.path)
        raise
    return Ported(recipe, report, source, names, mm_names)


def _port(cfg: dict[str, Any], options: PortOptions, report: Report) -> tuple[dict, list[str], dict | None]:
    classifier = map_classifier(cfg, report, options.model)
    optim = map_optim_wrapper(cfg, report)
    accumulate = optim.train.get("accumulate", 1)
    training = map_training(cfg, accumulate, report)
    runtime = map_runtime(cfg, training.by_epoch, accumulate, options.scale_lr_to, report)
    has_eval = training.eval.get("enabled", True)
    data = map_data(cfg, options.data, has_eval, report)
    if runtime.lr_scale is not None and "lr" in optim.optimizer:
        optim.optimizer["lr"] = optim.optimizer["lr"] * runtime.lr_scale
    recipe = _assemble(classifier, optim, training, runtime, data)
    model = _build_model(recipe["model"])
    check_eval_image_size(model, recipe, report)
    names = [n for n, _ in model.named_parameters()]
    mm_names = mmpretrain_names(classifier.family, recipe["model"]["name"], names, classifier.head)
    rules: dict[str, dict] = {}
    if optim.custom_keys:
        rules = translate_custom_keys(
            optim.custom_keys, names, mm_names, recipe["model"]["name"], "optim_wrapper.paramwise_cfg", report
        )
    backbone = (cfg.get("model") or {}).get("backbone") if options.model is None else None
    if isinstance(backbone, dict):
        rules = freeze_rules(backbone, classifier.family, mm_names, rules, report)
    if rules:
        recipe.setdefault("paramwise", {})["rules"] = rules
    if mm_names is not None:
        report_bias_differences(mm_names, optim.paramwise, "optim_wrapper.paramwise_cfg", report)
        settings = bool(optim.paramwise or optim.custom_keys)
        report_timm_only(classifier.family, recipe["model"]["name"], mm_names, settings, report)
    if optim.layer_decay and classifier.family not in LAYER_DECAY_VERIFIED:
        report.skip(
            "optim_wrapper.constructor",
            "layer ids come from timm's group_matcher, MMPretrain's from the backbone's get_layer_depth "
            f"(the same only for tested families: {', '.join(LAYER_DECAY_VERIFIED)}); check with "
            "inspect_recipe.py",
        )
    _check_weight_decay_schedule(recipe, report)
    _validate(recipe)
    return recipe, names, mm_names


def _assemble(
    classifier: ClassifierPort, optim: OptimPort, training: TrainingPort, runtime: RuntimePort, data: dict
) -> dict[str, Any]:
    """The recipe's tables in reading order; empty optional tables are left out."""
    recipe: dict[str, Any] = {}
    if runtime.seed is not None:
        recipe["seed"] = runtime.seed
    recipe["model"] = classifier.model
    recipe["data"] = data
    recipe["train"] = {**training.train, **optim.train, **classifier.train}
    if training.eval:
        recipe["eval"] = training.eval
    if runtime.checkpoint:
        recipe["checkpoint"] = runtime.checkpoint
    recipe["optimizer"] = optim.optimizer
    if optim.paramwise:
        recipe["paramwise"] = dict(optim.paramwise)
    if optim.clip_grad:
        recipe["clip_grad"] = optim.clip_grad
    if training.schedule:
        recipe["schedule"] = training.schedule
    if classifier.mixup:
        recipe["mixup"] = classifier.mixup
    if runtime.ema:
        recipe["ema"] = runtime.ema
    return recipe


def _build_model(model_cfg: dict[str, Any]) -> Any:
    """The recipe's timm model on the meta device (RecipeError where it does not build)."""
    from trainer.model import build_model, validate_model_cfg

    try:
        validate_model_cfg(model_cfg)
        return build_model(model_cfg, device="meta")
    except RecipeError as err:
        raise RecipeError("model", f"the timm model does not build: {err.key}: {err.message}") from None


def check_eval_image_size(model: Any, recipe: dict[str, Any], report: Report) -> None:
    """A model built for one input size (a ViT's patch embedding) cannot evaluate at another: there the
    evaluation size is left out and reported."""
    from trainer.data.transforms import resolve_input_config

    data = recipe["data"]
    size = data.get("eval_image_size")
    if size is None:
        return
    try:
        resolve_input_config(model, size, data.get("augment"), key="data.eval_image_size")
    except RecipeError:
        del data["eval_image_size"]
        train = data.get("image_size")
        report.skip(
            "test_pipeline",
            f"evaluates at {size}, trains at {train}: timm's {recipe['model']['name']} takes one input size "
            f"(both at {train})",
        )


def _check_weight_decay_schedule(recipe: dict[str, Any], report: Report) -> None:
    """MMPretrain's CosineAnnealingWeightDecay keeps zero-decay groups at 0; the generic one does not."""
    zero = any(v == 0.0 for k, v in recipe.get("paramwise", {}).items() if k.endswith("decay_mult"))
    zero |= any(r.get("decay_mult") == 0.0 for r in recipe.get("paramwise", {}).get("rules", {}).values())
    for i, entry in enumerate(recipe.get("schedule", [])):
        if entry.get("param_name") == "weight_decay" and entry.get("eta_min") and zero:
            report.skip(
                f"param_scheduler[{i}]",
                "groups with weight decay 0 would anneal to eta_min here (MMPretrain keeps them at 0)",
            )


def _validate(recipe: dict[str, Any]) -> None:
    """The recipe must load and build as written (the dry run's checks)."""
    from trainer.recipe.load import check_sections, validate
    from trainer.run.build import build_static

    try:
        cfg = validate(recipe)
        check_sections(cfg)
        build_static(cfg)
    except RecipeError as err:
        raise RecipeError(err.key, f"the ported recipe is not valid: {err.message}") from None
