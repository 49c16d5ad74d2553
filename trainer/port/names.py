"""Parameter names: timm's name -> the name MMPretrain gives the same parameter, per model family.

MMEngine matches custom_keys as substrings of MMPretrain's names (`backbone.layers.0.ln1.weight`); the
recipe's rules are globs on timm's (`blocks.0.norm1.weight`). With these tables the port evaluates each
key on the MMPretrain name of every timm parameter. tests/fixtures/mmpretrain/param_names/ holds the
names of MMPretrain's own models, against which the tables are tested.
"""

from __future__ import annotations

from trainer.port.report import Report
from trainer.port.tables import FAMILIES
from trainer.port.tables.base import Kind, Table


def family_table(family: str, model_name: str) -> Table | None:
    """The renaming table of `family` as it applies to timm's `model_name` (None: no table)."""
    table = FAMILIES.get(family)
    return table(model_name) if table else None


HEADS = {
    "LinearClsHead": {"HEAD": "head.fc"},
    "MultiLabelLinearClsHead": {"HEAD": "head.fc"},
    "VisionTransformerClsHead": {"HEAD": "head.layers.head"},
    "DeiTClsHead": {"HEAD": "head.layers.head", "HEAD_DIST": "head.layers.head_dist"},
    "ClsHead": {},
    "MultiLabelClsHead": {},
    "StackedLinearClsHead": {"HEAD_MID": "head.layers.0.fc", "HEAD": "head.layers.1.fc"},
    "EfficientFormerClsHead": {"HEAD": "head.head", "HEAD_DIST": "head.dist_head"},
    "LeViTClsHead": {"HEAD": "head.head"},
}
"""Where each MMPretrain head keeps its Linear layers (the tables write HEAD for the classifier, HEAD_DIST
for a distillation classifier, HEAD_MID for a hidden layer; a ClsHead has none: the backbone classifies)."""


def mmpretrain_names(
    family: str | None, model_name: str, timm_names: list[str], head: str | None = "LinearClsHead"
) -> dict[str, str] | None:
    """{timm name: MMPretrain name} for every parameter, or None where a name has no rule (no table)."""
    table = family_table(family, model_name) if family else None
    if table is None or head not in HEADS:
        return None
    out: dict[str, str] = {}
    for name in timm_names:
        for pattern, replacement in table.rules:
            m = pattern.fullmatch(name)
            if m:
                renamed = replacement(m) if callable(replacement) else m.expand(replacement)
                stem, _, attr = renamed.partition(".")
                if stem.startswith("HEAD"):
                    if stem not in HEADS[head]:
                        return None
                    renamed = f"{HEADS[head][stem]}.{attr}"
                out[name] = renamed
                break
        else:
            return None
    return out


def report_timm_only(
    family: str | None, model_name: str, table: dict[str, str], settings: bool, report: Report
) -> None:
    """Where the config sets paramwise options, report the timm parameters MMPretrain's model lacks: they
    take the settings by the name they would have there, which MMEngine never saw."""
    declared = family_table(family, model_name) if family and settings else None
    for difference in declared.declared(Kind.TIMM_ONLY) if declared else ():
        extra = [t for t in table if difference.matches(t)]
        if extra:
            report.skip(
                "optim_wrapper.paramwise_cfg",
                f"{len(extra)} parameters of timm's {model_name} have no MMPretrain counterpart "
                f"({difference.reason}), e.g. {extra[0]!r}: the settings apply to them as to "
                f"{table[extra[0]]!r}",
            )


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
