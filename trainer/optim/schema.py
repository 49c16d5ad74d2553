"""`[optimizer]`, `[paramwise]` and `[clip_grad]`: MMEngine's optim_wrapper as recipe tables."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from trainer.sections import OpenSection, Section


class ConstructorCfg(OpenSection):
    """`[optimizer.constructor]` (open): which optimizer constructor builds the param groups."""

    type: str = "Default"
    """"Default" (MMEngine's DefaultOptimWrapperConstructor), "LayerDecay", or a registered one."""


class OptimizerCfg(OpenSection):
    """`[optimizer]` (open): `type` is the class; every other key goes to its constructor."""

    type: str
    """Optimizer class: any torch.optim or timm.optim class name, a registered one, or "pkg.mod:Class"."""
    constructor: ConstructorCfg | None = None
    """Optional `[optimizer.constructor]` table."""


class RuleCfg(Section):
    """One `[paramwise.rules]` entry: multipliers for the parameters whose names match the glob."""

    lr_mult: float | None = Field(None, ge=0.0)
    """Learning-rate multiplier."""
    decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier."""
    freeze: bool = False
    """Set requires_grad = False on the matched parameters."""


class ParamwiseCfg(Section):
    """`[paramwise]`: MMEngine's paramwise_cfg, same names and meaning."""

    bias_lr_mult: float | None = Field(None, ge=0.0)
    """LR multiplier of biases (not of norm layers or DCN offsets)."""
    bias_decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier of biases (not of norm layers or DCN offsets)."""
    norm_decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier of norm-layer weights and biases."""
    flat_decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier of other 1-D parameters."""
    dwconv_decay_mult: float | None = Field(None, ge=0.0)
    """Weight-decay multiplier of depth-wise convolutions."""
    dcn_offset_lr_mult: float | None = Field(None, ge=0.0)
    """LR multiplier of deformable-convolution offsets."""
    bypass_duplicate: bool | None = None
    """Skip parameters shared between modules instead of failing."""
    rules: dict[str, RuleCfg] = {}
    """MMEngine's custom_keys with fnmatch globs on parameter names: `"head.*" = { lr_mult = 10.0 }`."""


class ClipGradCfg(Section):
    """`[clip_grad]`: MMEngine's clip_grad; by norm (max_norm, norm_type) or type = "value".

    inf is allowed here (max_norm = inf logs the gradient norm without clipping); nan fails the bounds.
    """

    model_config = ConfigDict(allow_inf_nan=True)

    type: Literal["norm", "value"] = "norm"
    """Clip the total norm ("norm") or each element ("value")."""
    max_norm: float | None = Field(None, gt=0.0)
    """Largest allowed total gradient norm (type "norm")."""
    norm_type: float | Literal["inf"] = 2.0
    """The p of the p-norm, > 0, or "inf"."""
    clip_value: float | None = Field(None, gt=0.0)
    """Largest allowed absolute gradient value (type "value")."""

    @model_validator(mode="after")
    def _complete(self) -> ClipGradCfg:
        if self.type == "norm":
            if self.max_norm is None:
                raise ValueError('max_norm: required when clipping by norm (or set type = "value")')
            if self.clip_value is not None:
                raise ValueError('clip_value: only used with type = "value"')
            if self.norm_type != "inf" and not self.norm_type > 0:
                raise ValueError(f'norm_type: must be > 0 or "inf", got {self.norm_type}')
        else:
            if self.clip_value is None:
                raise ValueError('clip_value: required with type = "value"')
            if self.max_norm is not None:
                raise ValueError("max_norm: only used when clipping by norm")
        return self
