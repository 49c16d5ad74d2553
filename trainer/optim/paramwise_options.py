"""`[paramwise]` in the form the constructors use: checked by the schema, then against the optimizer class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.errors import RecipeError
from trainer.keys import format_key
from trainer.optim.hyperparams import base_hyperparams
from trainer.optim.schema import ParamwiseCfg
from trainer.sections import validate_section

MULTIPLIERS = (
    "bias_lr_mult",
    "bias_decay_mult",
    "norm_decay_mult",
    "flat_decay_mult",
    "dwconv_decay_mult",
    "dcn_offset_lr_mult",
)
DECAY_MULTIPLIERS = ("bias_decay_mult", "norm_decay_mult", "flat_decay_mult", "dwconv_decay_mult")


def rule_key(glob: str, field: str | None = None) -> str:
    """The dotted key path of a rule, quoted as the recipe loader prints it: ``paramwise.rules."head.*"``."""
    return format_key(("paramwise", "rules", glob, *([field] if field else [])))


@dataclass(frozen=True)
class Rule:
    """One ``[paramwise.rules]`` entry: an fnmatch glob on the full parameter name and its settings."""

    glob: str
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    freeze: bool = False
    sets_decay: bool = False

    @property
    def key(self) -> str:
        return rule_key(self.glob)


@dataclass(frozen=True)
class ParamwiseOptions:
    """``[paramwise]`` parsed: MMEngine's paramwise_cfg with globbed rules; None means "not set"."""

    bias_lr_mult: float | None = None
    bias_decay_mult: float | None = None
    norm_decay_mult: float | None = None
    flat_decay_mult: float | None = None
    dwconv_decay_mult: float | None = None
    dcn_offset_lr_mult: float | None = None
    bypass_duplicate: bool = False
    rules: tuple[Rule, ...] = ()
    empty: bool = True


def parse_paramwise(paramwise_cfg: dict[str, Any] | None, optimizer_cfg: dict[str, Any]) -> ParamwiseOptions:
    """``[paramwise]`` checked (the schema, then the decay multipliers against the optimizer) and parsed."""
    cfg = validate_section(ParamwiseCfg, paramwise_cfg or {}, ("paramwise",))
    options = _options(cfg)
    check_decay_multipliers(options, optimizer_cfg)
    return options


def validate_paramwise_cfg(paramwise_cfg: dict[str, Any] | None, optimizer_cfg: dict[str, Any]) -> None:
    """Check ``[paramwise]`` without a model (the built-in constructors' options; RecipeError on problems)."""
    parse_paramwise(paramwise_cfg, optimizer_cfg)


def check_decay_multipliers(options: ParamwiseOptions, optimizer_cfg: dict[str, Any]) -> None:
    """Decay multipliers need an optimizer with a weight decay: a check of its class, not of the schema."""
    if base_hyperparams(optimizer_cfg).weight_decay is not None:
        return
    uses_decay = [f"paramwise.{k}" for k in DECAY_MULTIPLIERS if getattr(options, k) is not None]
    uses_decay += [rule_key(r.glob, "decay_mult") for r in options.rules if r.sets_decay]
    if uses_decay:
        raise RecipeError(
            uses_decay[0], f"needs a weight decay: {optimizer_cfg['type']} has no weight_decay argument"
        )


def _options(cfg: ParamwiseCfg) -> ParamwiseOptions:
    values = {k: float(v) for k in MULTIPLIERS if (v := getattr(cfg, k)) is not None}
    rules = tuple(
        Rule(
            glob=glob,
            lr_mult=1.0 if rule.lr_mult is None else float(rule.lr_mult),
            decay_mult=1.0 if rule.decay_mult is None else float(rule.decay_mult),
            freeze=rule.freeze,
            sets_decay=rule.decay_mult is not None,
        )
        for glob, rule in cfg.rules.items()
    )
    empty = not values and cfg.bypass_duplicate is None and not rules
    return ParamwiseOptions(**values, bypass_duplicate=bool(cfg.bypass_duplicate), rules=rules, empty=empty)
