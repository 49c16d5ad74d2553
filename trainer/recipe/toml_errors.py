"""TOML syntax errors as one-line RecipeErrors; a key set twice is named, with both of its lines.

tomllib reports only a position for "Cannot overwrite a value", so the key is found by a small scan of
the text: table headers and `key =` lines (dotted and quoted keys; arrays of tables counted per entry).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator

from trainer.errors import RecipeError
from trainer.keys import KeyPath, format_key

_KEY = r"""(?:[A-Za-z0-9_\-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY}(?:[ \t]*\.[ \t]*{_KEY})*"
_HEADER = re.compile(rf"^[ \t]*(\[\[?)[ \t]*({_DOTTED})[ \t]*\]")
_ASSIGN = re.compile(rf"^[ \t]*({_DOTTED})[ \t]*=")
_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def syntax_error(err: tomllib.TOMLDecodeError, text: str, file: str) -> RecipeError:
    """The RecipeError for a file tomllib rejected: the key set twice, else tomllib's line and column."""
    message = _POSITION.sub("", str(err))
    m = _POSITION.search(str(err))
    if m is None:
        return RecipeError("syntax", f"TOML syntax error: {message}", file=file)
    line = int(m.group(1))
    if message == "Cannot overwrite a value":
        found = _repeated_key(text, line)
        if found is not None:
            key, first, second = found
            twice = f"set twice (lines {first} and {second}); keep one"
            return RecipeError(format_key(key), f"TOML syntax error: {twice}", file=file)
    return RecipeError(f"line {line}, column {m.group(2)}", f"TOML syntax error: {message}", file=file)


def _repeated_key(text: str, line: int) -> tuple[KeyPath, int, int] | None:
    """(key path, first line, second line) when the last `key =` at or before `line` sets a key again."""
    try:
        assignments = list(_assignments(text, line))
    except tomllib.TOMLDecodeError:  # a key the scan misread: keep tomllib's own words
        return None
    if not assignments:
        return None
    key, second = assignments[-1]
    earlier = [n for other, n in assignments[:-1] if other == key]
    return (key, earlier[-1], second) if earlier else None


def _assignments(text: str, last_line: int) -> Iterator[tuple[KeyPath, int]]:
    """(full key path, line) of every `key =` up to `last_line`, under the table header in force there."""
    scope: KeyPath = ()
    entries: dict[tuple[str, ...], int] = {}  # array-of-tables path -> entries so far
    fence: str | None = None  # the quotes of an open multi-line string
    for number, text_line in enumerate(text.splitlines(), start=1):
        if number > last_line:
            return
        if fence is not None:
            if text_line.count(fence) % 2:
                fence = None
            continue
        header = _HEADER.match(text_line)
        if header:
            path = _parts(header.group(2))
            if header.group(1) == "[[":
                index = entries.get(path, 0)
                entries[path] = index + 1
                scope = (*_resolve(path[:-1], entries), path[-1], index)
            else:
                scope = _resolve(path, entries)
            continue
        assign = _ASSIGN.match(text_line)
        if assign:
            yield (*scope, *_parts(assign.group(1))), number
            rest = text_line[assign.end() :]
            fence = next((q for q in ('"""', "'''") if rest.count(q) % 2), None)


def _resolve(path: tuple[str, ...], entries: dict[tuple[str, ...], int]) -> KeyPath:
    """`path` with the current entry index after each array-of-tables prefix: schedule.x -> schedule[1].x."""
    out: list[str | int] = []
    for i, part in enumerate(path):
        out.append(part)
        if path[: i + 1] in entries:
            out.append(entries[path[: i + 1]] - 1)
    return tuple(out)


def _parts(dotted: str) -> tuple[str, ...]:
    """The parts of a dotted TOML key, unquoted: `a."b.c"` -> ("a", "b.c")."""
    node = tomllib.loads(f"{dotted} = 0")
    parts = []
    while isinstance(node, dict):
        key, node = next(iter(node.items()))
        parts.append(key)
    return tuple(parts)
