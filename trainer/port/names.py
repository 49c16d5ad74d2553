"""Parameter names: timm's name -> the name MMPretrain gives the same parameter, per model family.

MMEngine matches custom_keys as substrings of MMPretrain's names (`backbone.layers.0.ln1.weight`); the
recipe's rules are globs on timm's (`blocks.0.norm1.weight`). With these tables the port evaluates each
key on the MMPretrain name of every timm parameter. tests/fixtures/mmpretrain/param_names/ holds the
names of MMPretrain's own models, against which the tables are tested.
"""

from __future__ import annotations

from trainer.port.report import Report
from trainer.port.tables import FAMILIES
from trainer.port.tables.base import Rename


def family_rules(family: str, model_name: str) -> list[Rename] | None:
    """The renaming rules of `family` as it applies to timm's `model_name` (None: no table)."""
    table = FAMILIES.get(family)
    return table(model_name) if table else None


HEADS = {
    "LinearClsHead": {"HEAD": "head.fc"},
    "VisionTransformerClsHead": {"HEAD": "head.layers.head"},
    "DeiTClsHead": {"HEAD": "head.layers.head", "HEAD_DIST": "head.layers.head_dist"},
}
"""Where each MMPretrain head keeps the classifier's Linear (the tables write HEAD for it)."""


def mmpretrain_names(
    family: str | None, model_name: str, timm_names: list[str], head: str | None = "LinearClsHead"
) -> dict[str, str] | None:
    """{timm name: MMPretrain name} for every parameter, or None where a name has no rule (no table)."""
    rules = family_rules(family, model_name) if family else None
    if rules is None or head not in HEADS:
        return None
    out: dict[str, str] = {}
    for name in timm_names:
        for pattern, replacement in rules:
            m = pattern.fullmatch(name)
            if m:
                renamed = replacement(m) if callable(replacement) else m.expand(replacement)
                stem, _, attr = renamed.partition(".")
                if stem in ("HEAD", "HEAD_DIST"):
                    if stem not in HEADS[head]:
                        return None
                    renamed = f"{HEADS[head][stem]}.{attr}"
                out[name] = renamed
                break
        else:
            return None
    return out


BIAS_MULTIPLIERS = ("bias_lr_mult", "bias_decay_mult")


def bias_differences(table: dict[str, str]) -> list[str]:
    """timm names that are a `bias` where MMPretrain's is not, or the reverse (ConvNeXt V2's GRN: timm's
    weight/bias, MMPretrain's gamma/beta): MMEngine's bias multipliers treat them differently."""
    return [t for t, m in table.items() if t.endswith(".bias") != m.endswith(".bias")]


def report_bias_differences(table: dict[str, str], paramwise: dict, key: str, report: Report) -> None:
    """Report each bias multiplier that `bias_differences` would make apply to other parameters."""
    differ = bias_differences(table)
    for arg in BIAS_MULTIPLIERS:
        value = paramwise.get(arg)
        if arg == "bias_decay_mult" and value == paramwise.get("flat_decay_mult", 1.0):
            continue  # the other model's 1-D parameter takes flat_decay_mult: the same decay
        if differ and value is not None:
            shown = ", ".join(f"{t!r} ({table[t]!r})" for t in differ[:2])
            report.skip(
                f"{key}.{arg}",
                f"applies to {len(differ)} parameters named bias in one model only, e.g. {shown}",
            )
