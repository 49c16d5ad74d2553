"""`optim_wrapper`: optimizer, precision, accumulation, clipping, paramwise_cfg and its constructor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.errors import RecipeError
from trainer.optim.paramwise_options import MULTIPLIERS
from trainer.port.report import Report

LAYER_DECAY_MULTIPLIERS = ("bias_decay_mult", "norm_decay_mult", "flat_decay_mult")
LAYER_DECAY_VERIFIED = ("vit", "beit")
"""Families whose timm group_matcher layer ids equal MMPretrain's get_layer_depth (tested)."""
WRAPPER_ARGS = ("type", "optimizer", "paramwise_cfg", "constructor", "accumulative_counts", "clip_grad")
AMP_ARGS = ("loss_scale", "dtype", "use_fsdp")


@dataclass
class OptimPort:
    """[optimizer], [paramwise] (rules still as MMPretrain custom_keys), [clip_grad], [train] keys."""

    optimizer: dict[str, Any]
    paramwise: dict[str, Any] = field(default_factory=dict)
    custom_keys: dict[str, Any] = field(default_factory=dict)
    clip_grad: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    layer_decay: bool = False


def map_optim_wrapper(cfg: dict[str, Any], report: Report) -> OptimPort:
    """Map `cfg["optim_wrapper"]` (RecipeError when there is none or it holds several optimizers)."""
    wrapper = cfg.get("optim_wrapper")
    if not isinstance(wrapper, dict) or not isinstance(wrapper.get("optimizer"), dict):
        raise RecipeError("optim_wrapper", "the config has no optim_wrapper.optimizer: nothing to train with")
    kind = wrapper.get("type", "OptimWrapper")
    if kind == "OptimWrapperDict":
        raise RecipeError("optim_wrapper.type", "OptimWrapperDict (several optimizers) has no recipe form")
    port = OptimPort(optimizer=_optimizer(wrapper["optimizer"], report))
    if kind == "AmpOptimWrapper":
        port.train["precision"] = _precision(wrapper, report)
    elif kind == "OptimWrapper":
        port.train["precision"] = "no"
    else:
        report.skip("optim_wrapper.type", f"{kind!r}: the recipe's loop is a plain OptimWrapper")
    for arg in wrapper:
        if arg not in WRAPPER_ARGS and not (kind == "AmpOptimWrapper" and arg in AMP_ARGS):
            report.skip(f"optim_wrapper.{arg}", f"{wrapper[arg]!r} is not a recipe setting")
    counts = wrapper.get("accumulative_counts", 1)
    if isinstance(counts, int) and counts >= 1:
        if counts > 1:
            port.train["accumulate"] = counts
    else:
        report.skip("optim_wrapper.accumulative_counts", f"{counts!r}: expected a positive integer")
    port.clip_grad = _clip_grad(wrapper.get("clip_grad"), report)
    _paramwise(wrapper, port, report)
    return port


def _optimizer(optimizer: dict[str, Any], report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {"type": optimizer.get("type")}
    for arg, value in optimizer.items():
        if arg != "type":
            out[arg] = list(value) if isinstance(value, tuple) else value
    if out["type"] == "LARS":
        if "eta" in out:
            out["trust_coeff"] = out.pop("eta")
        out["always_adapt"] = True
        report.skip(
            "optim_wrapper.optimizer.type",
            "LARS becomes timm's Lars (trust_coeff = eta, always_adapt = true): it applies the lr after the "
            "momentum buffer, MMPretrain's before; equal while the lr is constant",
        )
    if out["type"] == "Adan" and out.get("max_grad_norm"):
        report.skip("optim_wrapper.optimizer.max_grad_norm", "timm's Adan does not clip inside the optimizer")
        out.pop("max_grad_norm")
    elif out["type"] == "Adan":
        out.pop("max_grad_norm", None)
    return _fit_signature(out, report)


def _fit_signature(optimizer: dict[str, Any], report: Report) -> dict[str, Any]:
    """Drop (and report) arguments the optimizer class rejects, so the recipe validates."""
    from trainer.optim import validate_optimizer_cfg

    while True:
        try:
            validate_optimizer_cfg(optimizer)
        except RecipeError as err:
            arg = err.key.removeprefix("optimizer.")
            if err.key.startswith("optimizer.") and arg in optimizer and arg != "type":
                report.skip(f"optim_wrapper.optimizer.{arg}", err.message)
                optimizer.pop(arg)
                continue
            raise RecipeError(f"optim_wrapper.{err.key}", err.message) from None
        return optimizer


def _precision(wrapper: dict[str, Any], report: Report) -> str:
    dtype = wrapper.get("dtype")
    precision = {None: "fp16", "float16": "fp16", "bfloat16": "bf16", "float32": "no"}.get(dtype)
    if precision is None:
        report.skip("optim_wrapper.dtype", f"{dtype!r}: fp16 is used")
        precision = "fp16"
    scale = wrapper.get("loss_scale", "dynamic")
    if scale != "dynamic":
        report.skip("optim_wrapper.loss_scale", f"{scale!r}: the recipe scales fp16 losses dynamically")
    if wrapper.get("use_fsdp"):
        report.skip(
            "optim_wrapper.use_fsdp", "FSDP is chosen at launch (accelerate config), not in the recipe"
        )
    return precision


def _clip_grad(clip: Any, report: Report) -> dict[str, Any] | None:
    if not clip:
        return None
    key = "optim_wrapper.clip_grad"
    kind = clip.get("type", "norm")
    out: dict[str, Any] = {}
    if kind == "norm":
        out["max_norm"] = float(clip["max_norm"]) if "max_norm" in clip else None
        norm_type = clip.get("norm_type", 2.0)
        if norm_type != 2.0:
            out["norm_type"] = "inf" if norm_type in ("inf", float("inf")) else float(norm_type)
        known = ("type", "max_norm", "norm_type")
    elif kind == "value":
        out = {"type": "value", "clip_value": clip.get("clip_value")}
        known = ("type", "clip_value")
    else:
        report.skip(f"{key}.type", f"{kind!r}: only 'norm' and 'value' clipping")
        return None
    for arg in clip:
        if arg not in known:
            report.skip(f"{key}.{arg}", f"{clip[arg]!r} is not a recipe setting")
    return out


def _paramwise(wrapper: dict[str, Any], port: OptimPort, report: Report) -> None:
    paramwise = wrapper.get("paramwise_cfg") or {}
    constructor = wrapper.get("constructor", "DefaultOptimWrapperConstructor")
    key = "optim_wrapper.paramwise_cfg"
    if constructor == "LearningRateDecayOptimWrapperConstructor":
        port.layer_decay = True
        rate = paramwise.get("layer_decay_rate", 1.0)
        port.optimizer["constructor"] = {
            "type": "LayerDecay",
            "decay_rate": float(rate),
            "exclude_1d": False,
            "exclude_no_weight_decay": False,
        }
        allowed = (*LAYER_DECAY_MULTIPLIERS, "layer_decay_rate", "custom_keys")
        for arg in paramwise:
            if arg not in allowed:
                report.skip(
                    f"{key}.{arg}", "MMPretrain's LearningRateDecayOptimWrapperConstructor ignores it"
                )
        for k, v in (paramwise.get("custom_keys") or {}).items():
            if isinstance(v, dict) and "lr_mult" in v:
                report.skip(f"{key}.custom_keys[{k!r}].lr_mult", "ignored by the layer-decay constructor")
        multipliers = LAYER_DECAY_MULTIPLIERS
        custom = {
            k: {a: x for a, x in v.items() if a != "lr_mult"} if isinstance(v, dict) else v
            for k, v in (paramwise.get("custom_keys") or {}).items()
        }
    else:
        if constructor != "DefaultOptimWrapperConstructor":
            report.skip(
                "optim_wrapper.constructor", f"{constructor!r}: MMEngine's default constructor is used"
            )
        multipliers = MULTIPLIERS
        custom = paramwise.get("custom_keys") or {}
        for arg in paramwise:
            if arg not in (*MULTIPLIERS, "bypass_duplicate", "custom_keys"):
                report.skip(
                    f"{key}.{arg}", f"{paramwise[arg]!r} is not a paramwise_cfg option MMEngine knows"
                )
        if paramwise.get("bypass_duplicate"):
            port.paramwise["bypass_duplicate"] = True
    for arg in multipliers:
        if paramwise.get(arg) is not None:
            port.paramwise[arg] = float(paramwise[arg])
    port.custom_keys = dict(custom)
