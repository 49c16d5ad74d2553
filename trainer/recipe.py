"""Load a TOML recipe: follow `base` chains, deep-merge, apply `--set` overrides, import, validate, dump."""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError

from trainer.errors import RecipeError, did_you_mean
from trainer.schema import RecipeCfg

OVERRIDE_SOURCE = "--set"
KeyPath = tuple[str | int, ...]


@dataclass
class Recipe:
    """A resolved, validated recipe: `cfg` is plain data (no None values), ready to dump as TOML."""

    path: Path
    cfg: dict[str, Any]
    chain: list[Path] = field(default_factory=list)
    sources: dict[KeyPath, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    def source_of(self, key: KeyPath) -> str:
        """The file (or "--set") that set `key` or its closest parent table."""
        for n in range(len(key), 0, -1):
            if key[:n] in self.sources:
                return self.sources[key[:n]]
        return str(self.path)

    @contextmanager
    def blame(self) -> Iterator[None]:
        """Fill in the file of a RecipeError raised inside (base file, "--set" or this recipe)."""
        try:
            yield
        except RecipeError as err:
            if err.file is None:
                err.file = self.source_of(_split_key(err.key))
            raise

    def to_toml(self) -> str:
        header = "# resolved recipe: " + " <- ".join(str(p) for p in self.chain) + "\n"
        return header + tomli_w.dumps(self.cfg)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml())


def load_recipe(path: str | Path, overrides: Sequence[str] = (), *, check: bool = True) -> Recipe:
    """Read `path` with its bases, apply `--set key.path=value` overrides, import `imports`, validate.

    With `check`, the optimizer, schedule and data sections are also checked by their own modules.
    Raises RecipeError (one line) on any problem.
    """
    path = Path(path)
    sources: dict[KeyPath, str] = {}
    chain: list[Path] = []
    raw = _load_with_bases(path, stack=[], sources=sources, chain=chain, key="recipe")
    raw.pop("base", None)
    for item in overrides:
        key, value = parse_override(item)
        _set_path(raw, key, value, sources)
    recipe = Recipe(path=path, cfg={}, chain=chain, sources=sources)
    with recipe.blame():
        recipe.cfg = validate(raw)
        if recipe.cfg.get("output_dir") is None:
            recipe.cfg["output_dir"] = f"runs/{path.stem}"
        _import_modules(recipe.cfg["imports"])
        if check:
            check_sections(recipe.cfg)
    return recipe


def _read_toml(path: Path, key: str, referrer: str | None) -> dict[str, Any]:
    where = referrer or str(path)
    if not path.is_file() or (referrer is not None and path.suffix != ".toml"):
        what = "no such recipe file" if path.suffix == ".toml" or not path.suffix else "not a .toml file"
        siblings = [p.name for p in path.parent.glob("*.toml")] if path.parent.is_dir() else []
        raise RecipeError(key, f"{what}: {str(path)!r}{did_you_mean(path.name, siblings)}", file=where)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        msg = str(err)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        loc = f"line {m.group(1)}, column {m.group(2)}" if m else "syntax"
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise RecipeError(loc, f"TOML syntax error: {msg}", file=str(path)) from None
    except UnicodeDecodeError:
        raise RecipeError("syntax", "not a UTF-8 text file", file=str(path)) from None


def _load_with_bases(
    path: Path,
    stack: list[Path],
    sources: dict[KeyPath, str],
    chain: list[Path],
    key: str,
    referrer: str | None = None,
) -> dict[str, Any]:
    """Load `path` and the files its `base` names (relative to it), base first, this file winning."""
    resolved = path.resolve()
    if resolved in stack:
        cycle = " -> ".join(p.name for p in [*stack, resolved])
        raise RecipeError("base", f"inheritance cycle: {cycle}", file=referrer)
    data = _read_toml(path, key, referrer)
    bases = data.get("base", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError("base", "must be a file path or a list of file paths (strings)", file=str(path))
    merged: dict[str, Any] = {}
    for i, base in enumerate(bases):
        base_key = "base" if len(bases) == 1 else f"base[{i}]"
        base_data = _load_with_bases(
            path.parent / base, [*stack, resolved], sources, chain, base_key, referrer=str(path)
        )
        base_data.pop("base", None)
        _merge(merged, base_data, sources, source=None)
    chain.append(path)
    _merge(merged, data, sources, source=str(path))
    return merged


def _merge(
    dst: dict[str, Any], src: dict[str, Any], sources: dict[KeyPath, str], source: str | None, prefix=()
) -> None:
    """Deep-merge `src` into `dst`: tables merge, everything else (lists too) replaces."""
    for k, v in src.items():
        key = (*prefix, k)
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v, sources, source, key)
        else:
            dst[k] = v
        if source is not None:
            _record(sources, key, v, source)


def _record(sources: dict[KeyPath, str], key: KeyPath, value: Any, source: str) -> None:
    sources[key] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _record(sources, (*key, k), v, source)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _record(sources, (*key, i), v, source)


_KEY_PART = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_\-]+)')


def _split_key(key: str, strict: bool = False) -> KeyPath:
    """`a.b[1]."c.*".d` -> ("a", "b", 1, "c.*", "d"). Non-strict: return what parsed before a problem."""
    parts: list[str | int] = []
    pos, key = 0, key.strip()
    while pos < len(key):
        m = _KEY_PART.match(key, pos)
        if not m:
            break
        parts.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
        while (idx := re.match(r"\[(\d+)\]", key[pos:])) is not None:
            parts.append(int(idx.group(1)))
            pos += idx.end()
        if pos == len(key):
            return tuple(parts)
        if key[pos] != ".":
            break
        pos += 1
    if strict:
        raise ValueError(key)
    return tuple(parts)


def format_key(key: KeyPath) -> str:
    """("paramwise", "rules", "head.*", "lr_mult") -> `paramwise.rules."head.*".lr_mult`."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_\-]+", part) else f'"{part}"'
            out += ("." if out else "") + text
    return out


def parse_override(item: str) -> tuple[KeyPath, Any]:
    """Parse `key.path=value`; the value is a TOML value, or a plain string when it is not valid TOML."""
    if "=" not in item:
        raise RecipeError(
            item, "an override must look like key.path=value, e.g. optimizer.lr=3e-4", file=OVERRIDE_SOURCE
        )
    key_text, _, value_text = item.partition("=")
    try:
        key = _split_key(key_text, strict=True)
    except ValueError:
        key = ()
    if not key:
        raise RecipeError(
            key_text.strip() or "<empty>",
            "not a valid key path; use a.b.c, quote globs: "
            'paramwise.rules."head.*".lr_mult=2, index lists: schedule[0].end=5',
            file=OVERRIDE_SOURCE,
        )
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    return key, value


def _set_path(cfg: dict[str, Any], key: KeyPath, value: Any, sources: dict[KeyPath, str]) -> None:
    node: Any = cfg
    for i, part in enumerate(key[:-1]):
        nxt = key[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise RecipeError(
                    format_key(key[: i + 1]),
                    f"no such list entry (the list has {size})",
                    file=OVERRIDE_SOURCE,
                )
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise RecipeError(
                format_key(key[: i + 1]), "cannot set a key inside a non-table value", file=OVERRIDE_SOURCE
            )
        if part not in node:
            node[part] = [] if isinstance(nxt, int) else {}
            sources[key[: i + 1]] = OVERRIDE_SOURCE  # a table the override made up is the override's fault
        node = node[part]
    last = key[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise RecipeError(format_key(key), "no such list entry", file=OVERRIDE_SOURCE)
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise RecipeError(format_key(key), "cannot set a key inside a non-table value", file=OVERRIDE_SOURCE)
    _record(sources, key, value, OVERRIDE_SOURCE)


def validate(raw: dict[str, Any]) -> dict[str, Any]:
    """Check `raw` against the schema; return plain data with defaults filled and no None values."""
    try:
        model = RecipeCfg.model_validate(raw)
    except ValidationError as err:
        raise _to_recipe_error(err, raw) from None
    return _drop_none(model.model_dump(mode="python"))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


MMENGINE_NAMES = {
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


def _schema_at(loc: KeyPath) -> type[BaseModel] | None:
    """The schema class of the table at `loc`, or None where the table is free-form."""
    cls: Any = RecipeCfg
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


def _to_recipe_error(err: ValidationError, raw: dict[str, Any]) -> RecipeError:
    """The first schema problem as a RecipeError with its key path and a plain-words message."""
    errors = err.errors(include_url=False)
    # Prefer unknown keys and missing keys (clearest), then the rest in order.
    order = {"extra_forbidden": 0, "missing": 1}
    e = sorted(errors, key=lambda e: order.get(e["type"], 2))[0]
    loc: KeyPath = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    loc = tuple(p for p in loc if p not in ("float", "literal['inf']", "str", "int"))
    kind = e["type"]
    value = e.get("input")
    ctx = e.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _schema_at(loc[:-1])
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
    if kind in _EXPECTED:
        return RecipeError(format_key(loc), f"expected {_EXPECTED[kind]}, got {_describe(value)}")
    if kind == "literal_error":
        return RecipeError(format_key(loc), f"got {value!r}; allowed: {ctx.get('expected')}")
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return RecipeError(format_key(loc), f"must be {bounds[kind]} {limit}, got {value!r}")
    if kind == "value_error":
        msg = str(ctx.get("error", e["msg"]))
        sub, sep, rest = msg.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+", sub):
            return RecipeError(format_key((*loc, sub)) if sub != "length" else format_key(loc), rest)
        return RecipeError(format_key(loc), msg)
    return RecipeError(format_key(loc), e["msg"])


def _import_modules(modules: list[str]) -> None:
    """Import the recipe's `imports` (they register custom optimizers, constructors, schedulers)."""
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    for i, name in enumerate(modules):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise RecipeError(f"imports[{i}]", f"cannot import {name!r}: {err}") from None


def check_sections(cfg: dict[str, Any]) -> None:
    """Checks that need the section's own module: model name, optimizer signature, schedule, data."""
    from trainer.data import validate_data_cfg
    from trainer.model import validate_model_cfg
    from trainer.optim import validate_optimizer_cfg, validate_paramwise_cfg
    from trainer.optim.config import optimizer_hyperparams
    from trainer.schedule import validate_schedule

    validate_model_cfg(cfg["model"])
    validate_optimizer_cfg(cfg["optimizer"])
    validate_paramwise_cfg(cfg["paramwise"], cfg["optimizer"])
    validate_schedule(
        cfg["schedule"], cfg["train"], optimizer_hyperparams(cfg["optimizer"]), cfg["optimizer"]["type"]
    )
    validate_data_cfg(cfg["data"])
