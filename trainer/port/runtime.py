"""Runtime keys: checkpoint hook, EMA hook, seed, auto_scale_lr, custom_imports, load_from/resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.port.report import Report

IGNORED_HOOKS = ("timer", "logger", "param_scheduler", "sampler_seed", "visualization")
EMA_ARGS = ("type", "momentum", "interval", "begin_iter", "begin_epoch", "update_buffers", "priority")
EMA_ARGS += ("ema_type", "evaluate_on_ema", "evaluate_on_origin", "strict_load")


@dataclass
class RuntimePort:
    """[checkpoint], [ema] (or None), seed, and the lr scale factor asked for with --scale-lr-to."""

    checkpoint: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, Any] | None = None
    seed: int | None = None
    lr_scale: float | None = None


def map_runtime(
    cfg: dict[str, Any], by_epoch: bool, accumulate: int, scale_lr_to: int | None, report: Report
) -> RuntimePort:
    """Map the runtime settings that change training; logging and visualization are left out."""
    port = RuntimePort()
    hooks = cfg.get("default_hooks") or {}
    _checkpoint(hooks.get("checkpoint"), by_epoch, accumulate, port, report)
    for name, hook in hooks.items():
        if name not in (*IGNORED_HOOKS, "checkpoint") and hook:
            report.skip(f"default_hooks.{name}", f"{hook.get('type', hook)!r} has no recipe counterpart")
    for i, hook in enumerate(cfg.get("custom_hooks") or []):
        key = f"custom_hooks[{i}]"
        if isinstance(hook, dict) and hook.get("type") == "EMAHook":
            port.ema = _ema(hook, key, by_epoch, accumulate, report)
        else:
            kind = hook.get("type") if isinstance(hook, dict) else hook
            report.skip(key, f"{kind!r} has no recipe counterpart")
    _randomness(cfg.get("randomness"), port, report)
    port.lr_scale = _auto_scale_lr(cfg.get("auto_scale_lr"), scale_lr_to, report)
    imports = cfg.get("custom_imports")
    if imports:
        modules = imports.get("imports") if isinstance(imports, dict) else imports
        report.skip(
            "custom_imports",
            f"{modules!r}: MMPretrain plugins are not imported (add the recipe's own `imports`)",
        )
    if cfg.get("load_from"):
        report.skip(
            "load_from",
            f"{cfg['load_from']!r}: an MMEngine checkpoint; convert the weights and set model.weights",
        )
    if cfg.get("resume"):
        report.skip("resume", "resume with scripts/train.py --resume auto")
    return port


def _checkpoint(hook: Any, by_epoch: bool, accumulate: int, port: RuntimePort, report: Report) -> None:
    if not isinstance(hook, dict):
        return
    key = "default_hooks.checkpoint"
    if hook.get("by_epoch", True) != by_epoch:
        report.skip(f"{key}.by_epoch", f"{hook['by_epoch']!r}: the recipe saves in the units of its length")
    interval = hook.get("interval", -1)
    if isinstance(interval, int) and interval >= 1:
        port.checkpoint["interval"] = interval if by_epoch else max(1, interval // accumulate)
    keep = hook.get("max_keep_ckpts")
    if isinstance(keep, int) and keep != 0:
        port.checkpoint["max_keep"] = max(keep, -1)
    else:
        report.note(
            f"{key}.max_keep_ckpts", "unset (MMEngine keeps every checkpoint): the recipe keeps the newest 3"
        )
    known = ("type", "interval", "by_epoch", "max_keep_ckpts", "save_last", "published_keys")
    for arg in hook:
        if arg not in known:
            report.skip(f"{key}.{arg}", f"{hook[arg]!r} is not a recipe setting")
    if hook.get("save_last", True) is False:
        report.skip(f"{key}.save_last", "the recipe always saves after the last step")


def _ema(hook: dict[str, Any], key: str, by_epoch: bool, accumulate: int, report: Report) -> dict[str, Any]:
    ema: dict[str, Any] = {
        "momentum": float(hook.get("momentum", 0.0002)),
        "interval": int(hook.get("interval", 1)),
    }
    begin_epoch, begin_iter = hook.get("begin_epoch", 0), hook.get("begin_iter", 0)
    if by_epoch:
        ema["begin"] = int(begin_epoch)
        if begin_iter:
            report.skip(f"{key}.begin_iter", f"{begin_iter!r}: epoch-based recipes begin the EMA at an epoch")
    else:
        ema["begin"] = int(begin_iter) // accumulate
        if begin_epoch:
            report.skip(f"{key}.begin_epoch", f"{begin_epoch!r}: step-based recipes begin the EMA at a step")
    if hook.get("update_buffers"):
        ema["update_buffers"] = True
    if hook.get("ema_type", "ExponentialMovingAverage") != "ExponentialMovingAverage":
        report.skip(f"{key}.ema_type", f"{hook['ema_type']!r}: the recipe's EMA is exponential")
    if accumulate > 1:
        report.skip(
            key, f"MMEngine updates the EMA every micro-batch, the recipe every update (x{accumulate})"
        )
    if hook.get("evaluate_on_origin") or not hook.get("evaluate_on_ema", True):
        report.note(key, "the recipe evaluates the model and its EMA side by side")
    for arg in hook:
        if arg not in EMA_ARGS:
            report.skip(f"{key}.{arg}", f"{hook[arg]!r} is not an [ema] setting")
    return ema


def _randomness(randomness: Any, port: RuntimePort, report: Report) -> None:
    if not isinstance(randomness, dict):
        return
    seed = randomness.get("seed")
    if isinstance(seed, int) and 0 <= seed < 2**32:
        port.seed = seed
    elif seed is None:
        report.note("randomness.seed", "None (MMEngine draws one): the recipe uses seed 0")
    if randomness.get("deterministic"):
        report.skip("randomness.deterministic", "deterministic cuDNN is not a recipe setting")
    if randomness.get("diff_rank_seed"):
        report.skip("randomness.diff_rank_seed", "the recipe seeds each process from (seed, step)")


def _auto_scale_lr(auto: Any, scale_to: int | None, report: Report) -> float | None:
    base = auto.get("base_batch_size") if isinstance(auto, dict) else None
    if not isinstance(base, int) or base < 1:
        if scale_to is not None:
            report.skip(
                "auto_scale_lr", f"no base_batch_size in the config: --scale-lr-to {scale_to} not applied"
            )
        return None
    if scale_to is None:
        report.note(
            "auto_scale_lr",
            f"optimizer.lr is for a batch of {base} (base_batch_size); the recipe's batch is batch_size x "
            "accumulate x processes: scale the lr linearly for another (--scale-lr-to N)",
        )
        return None
    report.note("auto_scale_lr", f"optimizer.lr scaled by {scale_to}/{base} for a batch of {scale_to}")
    return scale_to / base
