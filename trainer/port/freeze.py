"""`frozen_stages` -> `freeze = true` rules on the timm parameters MMPretrain's backbone freezes."""

from __future__ import annotations

from typing import Any

from trainer.optim.rules import RuleMatcher
from trainer.port.report import Report
from trainer.port.rules import cover

KEY = "model.backbone.frozen_stages"


def frozen_prefixes(backbone: dict[str, Any], family: str | None, depth: int) -> tuple[str, ...] | None:
    """The MMPretrain names (prefixes) `frozen_stages` freezes, as the backbone's _freeze_stages does;
    None for a family whose freezing the port does not know."""
    stages = backbone.get("frozen_stages", -1)
    if family == "resnet":
        if stages < 0:
            return ()
        stem = ("backbone.conv1.", "backbone.bn1.", "backbone.stem.")
        return stem + tuple(f"backbone.layer{i}." for i in range(1, stages + 1))
    if family == "vit":
        if stages <= 0:
            return ()
        frozen = ("backbone.pos_embed", "backbone.patch_embed.", "backbone.pre_norm.", "backbone.cls_token")
        frozen += tuple(f"backbone.layers.{i}." for i in range(stages))
        if stages == depth and backbone.get("final_norm", True):
            frozen += ("backbone.ln1.",)
        if stages == depth and backbone.get("out_type", "cls_token") == "avg_featmap":
            frozen += ("backbone.ln2.",)
        return frozen
    return None


def freeze_rules(
    backbone: dict[str, Any],
    family: str | None,
    mm_names: dict[str, str] | None,
    rules: dict[str, dict[str, Any]],
    report: Report,
) -> dict[str, dict[str, Any]]:
    """`rules` with `freeze = true` on exactly the parameters MMPretrain freezes (checked under the recipe's
    precedence); reported where the family's freezing is unknown or cannot be written."""
    stages = backbone.get("frozen_stages", -1)
    if family not in ("resnet", "vit") or stages == -1:  # other handlers report frozen_stages themselves
        return rules
    depth = len({n.split(".")[2] for n in (mm_names or {}).values() if n.startswith("backbone.layers.")})
    prefixes = frozen_prefixes(backbone, family, depth) if mm_names is not None else None
    if prefixes is None:
        report.skip(KEY, f"{backbone['frozen_stages']!r}: the port knows no frozen stages for this backbone")
        return rules
    frozen = {t for t, m in mm_names.items() if m.startswith(prefixes)}
    if not frozen:
        return rules
    names = list(mm_names)
    out = {glob: dict(rule) for glob, rule in rules.items()}
    for glob in cover(frozen, names):
        out.setdefault(glob, {})["freeze"] = True
    matcher = RuleMatcher(list(out))
    wrong = [n for n in names if bool(out.get(matcher.match(n) or "", {}).get("freeze")) != (n in frozen)]
    if wrong:  # a longer custom-key glob wins over a frozen prefix: freeze exactly by name
        out = {glob: dict(rule) for glob, rule in rules.items()}
        for name in sorted(frozen):
            out.setdefault(name, {})["freeze"] = True
    what = f"{stages!r} -> freeze rules ({len(frozen)} parameters)"
    if family == "resnet":
        report.skip(
            KEY,
            f"{what}; MMPretrain also holds the frozen stages in eval mode, the recipe does not: their "
            "BatchNorm running statistics keep updating",
        )
    elif backbone.get("drop_path_rate") or backbone.get("drop_rate"):
        report.skip(
            KEY, f"{what}; MMPretrain also turns dropout off in the frozen layers, the recipe does not"
        )
    else:
        report.note(KEY, what)
    return out
