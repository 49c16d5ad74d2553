"""Key paths of recipe values: `a.b[1]."c.*".d` <-> ("a", "b", 1, "c.*", "d")."""

from __future__ import annotations

import re

KeyPath = tuple[str | int, ...]

_KEY_PART = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_\-]+)')
_BARE = re.compile(r"[A-Za-z0-9_\-]+")


def split_key(key: str, strict: bool = False) -> KeyPath:
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
            text = part if _BARE.fullmatch(part) else f'"{part}"'
            out += ("." if out else "") + text
    return out
