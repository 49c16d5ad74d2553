"""Recipe tables: the strict pydantic base classes every section's schema derives from, and validation with
one-line errors (the first pydantic problem as a RecipeError naming its key path)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from trainer.errors import RecipeError, did_you_mean
from trainer.keys import KeyPath, format_key

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """A recipe table: unknown keys are errors, types are strict (a string is never a number), numbers are
    finite (nan or inf would train silently wrong)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, use_attribute_docstrings=True)


class OpenSection(Section):
    """A recipe table whose extra keys are passed through to a callee and checked against its signature."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, use_attribute_docstrings=True)


MMENGINE_NAMES = {
    "data_root": "MMPretrain's data_root is data.path here (ann_file and data_prefix are relative to it)",
    "custom_keys": "MMEngine's custom_keys is [paramwise.rules] here (fnmatch globs on parameter names; "
    "MMEngine's key 'k' is the glob '*k*')",
    "paramwise_cfg": "MMEngine's paramwise_cfg is the top-level [paramwise] table here",
    "optim_wrapper": "MMEngine's optim_wrapper is [optimizer] (its optimizer) and [clip_grad] here",
    "param_scheduler": "MMEngine's param_scheduler is the [[schedule]] list here",
    "accumulative_counts": "MMEngine's accumulative_counts is train.accumulate here",
    "max_epochs": "MMEngine's max_epochs is train.epochs here",
    "max_iters": "MMEngine's max_iters is train.max_steps here",
}
"""Unknown keys that are MMEngine's names for one of ours: the message names ours."""

_EXPECTED = {
    "float_type": "a number",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list (TOML array)",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def validate_section(cls: type[M], raw: Mapping[str, Any] | Any, key: KeyPath) -> M:
    """`raw` (the table at `key`, e.g. ("data",)) checked by its schema class; RecipeError on a problem."""
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise to_recipe_error(err, cls, prefix=key) from None


def to_recipe_error(err: ValidationError, cls: type[BaseModel], prefix: KeyPath = ()) -> RecipeError:
    """The first problem `cls` found as a RecipeError with its key path (under `prefix`) in plain words."""
    errors = err.errors(include_url=False)
    # Prefer unknown keys and missing keys (clearest), then the rest in order.
    order = {"extra_forbidden": 0, "missing": 1}
    e = sorted(errors, key=lambda e: order.get(e["type"], 2))[0]
    loc: KeyPath = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    loc = tuple(p for p in loc if p not in ("float", "literal['inf']", "str", "int"))
    relative, loc = loc, (*prefix, *loc)
    kind = e["type"]
    value = e.get("input")
    ctx = e.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _schema_at(cls, relative[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        what = "table" if isinstance(value, dict) else "key"
        if str(loc[-1]) in MMENGINE_NAMES:
            return RecipeError(format_key(loc), f"unknown {what}: {MMENGINE_NAMES[str(loc[-1])]}")
        hint = did_you_mean(str(loc[-1]), allowed)
        listing = f" (allowed: {', '.join(allowed)})" if allowed and not hint else ""
        return RecipeError(format_key(loc), f"unknown {what}{hint}{listing}")
    if kind == "finite_number":
        return RecipeError(format_key(loc), f"must be a finite number, got {value!r}")
    if kind == "missing":
        return RecipeError(format_key(loc), "required key is missing")
    if kind == "string_too_short":
        return RecipeError(format_key(loc), f"must be a non-empty string, got {value!r}")
    if kind in _EXPECTED:
        return RecipeError(format_key(loc), f"expected {_EXPECTED[kind]}, got {_describe(value)}")
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(value, allowed) if isinstance(value, str) else ""
        return RecipeError(format_key(loc), f"got {value!r}; allowed: {ctx.get('expected')}{hint}")
    if kind in _BOUNDS:
        limit = next(iter(ctx.values()))
        return RecipeError(format_key(loc), f"must be {_BOUNDS[kind]} {limit}, got {value!r}")
    if kind == "value_error":
        msg = str(ctx.get("error", e["msg"]))
        sub, sep, rest = msg.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", sub):  # "key: ..." or "table.key: ..."
            return RecipeError(
                format_key((*loc, *sub.split("."))) if sub != "length" else format_key(loc), rest
            )
        return RecipeError(format_key(loc), msg)
    return RecipeError(format_key(loc), e["msg"])


def _describe(value: Any) -> str:
    kind = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    text = repr(value)
    return kind if len(text) > 40 or isinstance(value, dict) else f"{kind} {text}"


def _schema_at(root: type[BaseModel], loc: KeyPath) -> type[BaseModel] | None:
    """The schema class of the table at `loc` under `root`, or None where the table is free-form."""
    cls: Any = root
    skip_next = False
    for part in loc:
        if isinstance(part, int):
            continue
        if skip_next:  # a free-form key of a dict[str, Model] table, e.g. a rule's glob
            skip_next = False
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        info = cls.model_fields.get(str(part))
        if info is None:
            return None
        skip_next = getattr(info.annotation, "__origin__", None) is dict
        cls = _model_in(info.annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) and not skip_next else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None
