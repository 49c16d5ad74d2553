"""What the optimizer will do to each parameter: the inspect_recipe JSON and its readable table."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainer.optim.build import unwrap_model
from trainer.optim.groups import REPORT_ATTR

_GROUP_SKIP = ("params", "param_names", "name")


def describe_params(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """{"params": [{name, shape, group, lr, weight_decay, rule, kind, frozen}], "groups": [...], "totals"}.

    Every parameter of the model appears (frozen ones with group None); `rule` is the glob that matched
    (None when none did), `kind` the type multiplier MMEngine applied (norm, bias, dwconv, flat, ...).
    """
    model = unwrap_model(model)
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
    groups = optimizer.param_groups
    group_names = [str(g.get("name", f"group_{i}")) for i, g in enumerate(groups)]
    group_of = {id(p): i for i, g in enumerate(groups) for p in g["params"]}
    report = getattr(optimizer, REPORT_ATTR, {})
    params = []
    first_name: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        i = group_of.get(id(param))
        group = groups[i] if i is not None else {}
        first = first_name.setdefault(id(param), name)
        info = report.get(name) or {**report.get(first, {}), "kind": "duplicate" if first != name else None}
        params.append(
            {
                "name": name,
                "shape": list(param.shape),
                "group": group_names[i] if i is not None else None,
                "lr": _jsonable(group.get("lr")),
                "weight_decay": _jsonable(group.get("weight_decay")),
                "rule": info.get("rule"),
                "kind": info.get("kind"),
                "frozen": not param.requires_grad,
            }
        )
    group_rows = [
        {
            "name": group_names[i],
            "tensors": len(g["params"]),
            "numel": sum(p.numel() for p in g["params"]),
            **{k: _jsonable(v) for k, v in g.items() if k not in _GROUP_SKIP},
        }
        for i, g in enumerate(groups)
    ]
    return {
        "optimizer": type(optimizer).__name__,
        "params": params,
        "groups": group_rows,
        "totals": _totals(model, len(groups)),
    }


def _totals(model: nn.Module, num_groups: int) -> dict[str, int]:
    unique = list(model.parameters())
    trainable = [p for p in unique if p.requires_grad]
    frozen = [p for p in unique if not p.requires_grad]
    return {
        "params": sum(p.numel() for p in unique),
        "tensors": len(unique),
        "trainable_params": sum(p.numel() for p in trainable),
        "trainable_tensors": len(trainable),
        "frozen_params": sum(p.numel() for p in frozen),
        "frozen_tensors": len(frozen),
        "groups": num_groups,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def format_description(description: dict[str, Any]) -> str:
    """The aligned per-parameter table, the groups and the totals, as inspect_recipe.py prints them."""
    header = ["name", "shape", "group", "lr", "weight_decay", "rule", "type", "frozen"]
    rows = [
        [
            p["name"],
            "x".join(map(str, p["shape"])) or "scalar",
            p["group"] or "-",
            _num(p["lr"]),
            _num(p["weight_decay"]),
            p["rule"] or "-",
            p["kind"] or "-",
            "yes" if p["frozen"] else "",
        ]
        for p in description["params"]
    ]
    lines = _table(header, rows)
    extra = sorted({k for g in description["groups"] for k in ("layer_id", "lr_scale") if k in g})
    group_header = ["#", "group", "tensors", "params", "lr", "weight_decay", "lr_mult", "decay_mult", *extra]
    group_rows = [
        [
            str(i),
            g["name"],
            str(g["tensors"]),
            f"{g['numel']:,}",
            _num(g.get("lr")),
            _num(g.get("weight_decay")),
            _num(g.get("lr_mult")),
            _num(g.get("decay_mult")),
            *(_num(g.get(k)) for k in extra),
        ]
        for i, g in enumerate(description["groups"])
    ]
    t = description["totals"]
    lines += ["", f"{description['optimizer']} param groups ({len(group_rows)}):"]
    lines += ["  " + line for line in _table(group_header, group_rows)]
    lines += [
        "",
        f"totals: {t['params']:,} params in {t['tensors']} tensors; trainable {t['trainable_params']:,} "
        f"({t['trainable_tensors']} tensors); frozen {t['frozen_params']:,} ({t['frozen_tensors']} tensors)",
    ]
    return "\n".join(lines)
