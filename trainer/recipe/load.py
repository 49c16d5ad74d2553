"""Load a TOML recipe: follow `base` chains, deep-merge, apply `--set` overrides, import, validate, dump."""

from __future__ import annotations

import glob
import importlib
import os
import sys
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from trainer.errors import RecipeError, did_you_mean
from trainer.keys import KeyPath, format_key, split_key
from trainer.recipe.schema import RecipeCfg
from trainer.recipe.toml_errors import syntax_error
from trainer.sections import validate_section

OVERRIDE_SOURCE = "--set"


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
                err.file = self.source_of(split_key(err.key))
            raise

    def to_toml(self) -> str:
        """The resolved recipe as a run folder keeps it: local paths (data, weights, a local-dir: model)
        absolute, so that it reads the same data from any working directory."""
        header = "# resolved recipe: " + " <- ".join(str(p) for p in self.chain) + "\n"
        return header + tomli_w.dumps(absolute_paths(self.cfg))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml())


def absolute_paths(cfg: dict[str, Any]) -> dict[str, Any]:
    """`cfg` with its local paths relative to the working directory made absolute: `data.path` where it
    names a local file, folder or glob (a Hub name stays as it is), `model.weights`, a `local-dir:` model."""
    cfg = {**cfg, "data": dict(cfg.get("data", {})), "model": dict(cfg.get("model", {}))}
    data, model = cfg["data"], cfg["model"]
    if isinstance(data.get("path"), str) and _is_local(data["path"]):
        data["path"] = os.path.abspath(data["path"])
    if model.get("weights"):
        model["weights"] = os.path.abspath(model["weights"])
    if str(model.get("name", "")).startswith("local-dir:"):
        model["name"] = "local-dir:" + os.path.abspath(model["name"][len("local-dir:") :])
    return cfg


def _is_local(path: str) -> bool:
    """Whether `data.path` names something on this machine (a file, folder or glob with matches)."""
    return not os.path.isabs(path) and (os.path.exists(path) or bool(glob.glob(path)))


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
        _drop_alternative(raw, key, sources)
        _set_path(raw, key, value, sources)
        if key in ALTERNATIVES and QUICK_TRIAL not in sources and isinstance(raw.get("train"), dict):
            raw["train"]["schedule_past_end"] = "warn"  # a quick trial: cut the schedule, as MMEngine
            sources[QUICK_TRIAL] = OVERRIDE_SOURCE
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
        what = "not a .toml file" if path.is_file() else "no such recipe file"
        siblings = [p.name for p in path.parent.glob("*.toml")] if path.parent.is_dir() else []
        raise RecipeError(key, f"{what}: {str(path)!r}{did_you_mean(path.name, siblings)}", file=where)
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError:
        raise RecipeError("syntax", "not a UTF-8 text file", file=str(path)) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark (some Windows editors write one): not TOML's
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise syntax_error(err, text, str(path)) from None


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


ALTERNATIVES: dict[KeyPath, KeyPath] = {
    ("train", "epochs"): ("train", "max_steps"),
    ("train", "max_steps"): ("train", "epochs"),
}
"""Keys of which a recipe sets one: a later file or a --set that sets one replaces the other."""
QUICK_TRIAL: KeyPath = ("train", "schedule_past_end")
"""Set to "warn" by a --set of the training length, unless a recipe or --set gives it."""


def _drop_alternative(cfg: dict[str, Any], key: KeyPath, sources: dict[KeyPath, str]) -> None:
    """Setting `key` (a --set, or a file over its bases) unsets the key it is an alternative to."""
    other = ALTERNATIVES.get(key)
    if other is None or sources.get(other) == OVERRIDE_SOURCE:  # both on the command line: an error later
        return
    table = cfg.get(other[0])
    if isinstance(table, dict):
        table.pop(other[1], None)
        sources.pop(other, None)


def _merge(
    dst: dict[str, Any], src: dict[str, Any], sources: dict[KeyPath, str], source: str | None, prefix=()
) -> None:
    """Deep-merge `src` into `dst`: tables merge, everything else (lists too) replaces; a key replaces its
    alternative (`train.max_steps` replaces a base's `train.epochs`)."""
    for k, v in src.items():
        key = (*prefix, k)
        other = ALTERNATIVES.get(key)
        if other is not None and other[-1] not in src:  # the same file setting both is an error later
            dst.pop(other[-1], None)
            sources.pop(other, None)
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


def parse_override(item: str) -> tuple[KeyPath, Any]:
    """Parse `key.path=value`; the value is a TOML value, or a plain string when it is not valid TOML."""
    if "=" not in item:
        raise RecipeError(
            item, "an override must look like key.path=value, e.g. optimizer.lr=3e-4", file=OVERRIDE_SOURCE
        )
    key_text, _, value_text = item.partition("=")
    try:
        key = split_key(key_text, strict=True)
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
    model = validate_section(RecipeCfg, raw, ())
    return _drop_none(model.model_dump(mode="python"))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


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
    from trainer.optim.hyperparams import optimizer_hyperparams
    from trainer.recipe.trackers import check_trackers
    from trainer.schedule import validate_schedule

    validate_model_cfg(cfg["model"])
    validate_optimizer_cfg(cfg["optimizer"])
    validate_paramwise_cfg(cfg["paramwise"], cfg["optimizer"])
    validate_schedule(
        cfg["schedule"], cfg["train"], optimizer_hyperparams(cfg["optimizer"]), cfg["optimizer"]["type"]
    )
    validate_data_cfg(cfg["data"])
    check_trackers(cfg["train"])
