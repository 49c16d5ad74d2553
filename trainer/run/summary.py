"""What a run trains, said by `scripts/train.py --dry-run` and by every run at its start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.data import global_sampler
from trainer.recipe.load import Recipe
from trainer.run.build import build_static
from trainer.run.runtime import effective_batch_size, resolve_precision, world_size


def dry_run(recipe: Recipe, amp: bool = False) -> str:
    """Build model, optimizer and schedule (no data is read) and describe them in a few lines."""
    cfg = recipe.cfg
    built = build_static(cfg)  # steps_per_epoch needs the data, which a dry run does not read
    model, optimizer = built.model, built.optimizer
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    train = cfg["train"]
    length = f"{train['epochs']} epochs" if "epochs" in train else f"{train['max_steps']} steps"
    opt_args = {k: v for k, v in cfg["optimizer"].items() if k not in ("type", "constructor")}
    schedule = " -> ".join(_describe_entry(e) for e in cfg["schedule"]) or "constant"
    batch = cfg["data"]["batch_size"]
    lines = [
        f"recipe     {recipe.path} ({' <- '.join(p.name for p in reversed(recipe.chain))})",
        f"model      {cfg['model']['name']}: {total:,} parameters ({trainable:,} trainable)",
        f"optimizer  {cfg['optimizer']['type']}({_kwargs(opt_args)}),"
        f" {len(optimizer.param_groups)} param groups",
        f"schedule   {schedule}",
        f"batch      {batch} per process x {train['accumulate']} accumulate x {world_size()} processes"
        f" = {effective_batch_size(cfg)} per step",
        f"length     {length}, precision {resolve_precision(train, amp)}",
        f"data       {cfg['data']['path']} (not read in a dry run)",
        f"output     {cfg['output_dir']}",
        "dry run: recipe is valid; nothing was trained or written",
    ]
    return "\n".join(lines)


def _kwargs(args: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in args.items())


def _describe_entry(entry: dict) -> str:
    args = {k: v for k, v in entry.items() if k != "type"}
    return f"{entry['type']}({_kwargs(args)})"


def start_summary(
    recipe: Recipe, run: Any, accelerator: Any, output_dir: Path, resumed_at: int | None
) -> str:
    """What a run is about to train, printed once it is built (the dry run's lines with the data read):
    run folder, model, data sizes, steps, param groups, schedule, precision and processes."""
    cfg, length = recipe.cfg, run.length
    data, train = cfg["data"], cfg["train"]
    model = accelerator.unwrap_model(run.model)
    total = sum(p.numel() for p in model.parameters())
    classes = getattr(model, "num_classes", None)
    sampler = global_sampler(run.train_dl)
    eval_size = _rows(run.eval_dl)
    sizes = f"{_rows(run.train_dl):,} train ({data['train_split']})"
    if eval_size is not None:
        sizes += f", {eval_size:,} eval ({data.get('eval_split', 'held out')})"
    streamed = " streamed" if data.get("streaming") else ""
    image_size = f", {data['image_size']} px" if data.get("image_size") else ""
    unit = f"{train['epochs']} epochs x {length.steps_per_epoch}" if length.by_epoch else "max_steps"
    processes = accelerator.num_processes
    plural = "es" if processes > 1 else ""
    per_step = f"{data['batch_size']} per process x {processes} process{plural}"
    per_step += f" x {length.accumulate} accumulate"
    if sampler is not None:
        per_step += f" = {sampler.global_batch} per step"
    opt_args = {k: v for k, v in cfg["optimizer"].items() if k not in ("type", "constructor")}
    groups = run.optimizer.param_groups
    schedule = " -> ".join(_describe_entry(e) for e in cfg["schedule"]) or "constant"
    precision = {"no": "fp32"}.get(accelerator.mixed_precision, accelerator.mixed_precision)
    start = f"resumed at step {resumed_at}" if resumed_at is not None else "fresh start"
    lines = [
        f"run        {output_dir} ({start}; recipe {recipe.path})",
        f"model      {cfg['model']['name']}: {total:,} parameters, {classes} classes",
        f"data       {data['path']}{streamed}: {sizes}{image_size}",
        f"steps      {length.total_steps} ({unit}); batch {per_step}",
        f"optimizer  {cfg['optimizer']['type']}({_kwargs(opt_args)}): {_groups(groups)}",
        f"schedule   {schedule}",
        f"precision  {precision} on {accelerator.device.type}, {processes} process{plural}"
        + (", EMA" if run.ema is not None else ""),
    ]
    return "\n".join(lines)


def _rows(loader: Any) -> int | None:
    """The rows of a loader's dataset (a split's images), or None."""
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def _groups(groups: list[dict[str, Any]]) -> str:
    """`2 param groups (25 tensors decay 0.05, 37 tensors decay 0.0)`; only the count when there are many."""
    if len(groups) > 4:
        return f"{len(groups)} param groups (scripts/inspect_recipe.py lists them)"
    parts = []
    for group in groups:
        extra = [f"lr_mult {group['lr_mult']:g}"] if group.get("lr_mult", 1.0) != 1.0 else []
        if "weight_decay" in group:
            extra.append(f"decay {group['weight_decay']:g}")
        parts.append(" ".join([f"{len(group['params'])} tensors", *extra]))
    return f"{len(groups)} param group{'s' if len(groups) > 1 else ''} ({', '.join(parts)})"
