"""The human summary `scripts/train.py --dry-run` prints: what would be trained, and how."""

from __future__ import annotations

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
