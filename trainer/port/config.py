"""Read an MMPretrain config with MMEngine's own `Config`: `_base_` chains, `_delete_`, `{{_base_.x}}`."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import RecipeError

INSTALL_HINT = 'reading MMPretrain configs needs MMEngine\'s Config: pip install -e ".[port]"'


@dataclass
class Source:
    """A resolved config as plain data, and the files it was built from (the file itself last)."""

    path: Path
    cfg: dict[str, Any]
    chain: list[Path]


def read_config(path: str | Path) -> Source:
    """Parse `path` and its bases with MMEngine (custom_imports are not imported); RecipeError naming the
    file on any problem."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise RecipeError("config", "no such file", file=where)
    if path.suffix not in (".py", ".json", ".yaml", ".yml"):
        raise RecipeError(
            "config", f"not an MMEngine config file (.py, .json, .yaml): {path.name!r}", file=where
        )
    try:
        from mmengine.config import Config
    except ImportError:
        raise RecipeError("config", INSTALL_HINT, file=where) from None
    try:
        cfg = Config.fromfile(str(path), import_custom_modules=False)
    except Exception as err:  # noqa: BLE001 - MMEngine raises anything from a config's own code
        raise RecipeError("config", f"MMEngine cannot read it: {_one_line(err)}", file=where) from None
    return Source(path=path, cfg=plain(cfg.to_dict()), chain=base_chain(path))


LAZY_PREFIXES = ("mmpretrain.", "mmengine.", "mmcv.", "torch.")
"""The pure-Python config format imports classes; MMEngine reads them lazily as `package.module.Class`."""
TYPE_KEYS = ("type", "constructor", "ema_type")


def plain(value: Any, key: str | None = None) -> Any:
    """Config values as plain dicts, lists and scalars (tuples become lists; an imported class its name)."""
    if isinstance(value, dict):
        return {str(k): plain(v, str(k)) for k, v in value.items()}
    if key in TYPE_KEYS and isinstance(value, str) and value.startswith(LAZY_PREFIXES):
        return value.rsplit(".", 1)[-1]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type):
        return value.__name__
    name = getattr(value, "_module", None) and str(value).rsplit(".", 1)[-1]
    return name or repr(value)


def base_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[Path]:
    """The files `path` inherits from, bases first (read from the `_base_` assignment; best effort)."""
    resolved = path.resolve()
    if resolved in seen:
        return []
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return [path]
    bases: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            bases = [value] if isinstance(value, str) else [b for b in value if isinstance(b, str)]
        elif isinstance(node, ast.With):  # the pure-Python format: `with read_base(): from .x import *`
            for item in node.body:
                if isinstance(item, ast.ImportFrom) and item.level and item.module:
                    up = "../" * (item.level - 1)
                    bases.append(f"{up}{item.module.replace('.', '/')}.py")
    chain: list[Path] = []
    for base in bases:
        if base.startswith("mmpretrain::") or base.startswith("mmcls::"):
            continue
        for p in base_chain(path.parent / base, (*seen, resolved)):
            if p not in chain:
                chain.append(p)
    return [*chain, path]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
