"""Write the recipe: a comment header (source, what did not map, notes) and the TOML from tomli-w."""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
from collections.abc import Sequence
from typing import Any

import tomli_w

from trainer.port.report import Report

WIDTH = 110


def recipe_text(
    recipe: dict[str, Any], report: Report, source: str, chain: Sequence[str], command: str
) -> str:
    """The recipe file: the header comments, then `recipe` as TOML."""
    lines = [f"# Ported from MMPretrain {source} by scripts/port_mmpretrain.py"]
    if len(chain) > 1:
        lines += _wrapped("bases: " + ", ".join(chain[:-1]), "#   ")
    lines += _wrapped(command, "#   ")
    if report.unmapped:
        lines.append(f"# Not mapped ({len(report.unmapped)}; each also printed as a warning):")
        for item in report.unmapped:
            lines += _wrapped(str(item), "#   ", "#     ")
    else:
        lines.append("# Not mapped: nothing")
    if report.notes:
        lines.append("# Notes:")
        for item in report.notes:
            lines += _wrapped(str(item), "#   ", "#     ")
    return "\n".join(lines) + "\n" + toml_text(recipe)


def toml_text(recipe: dict[str, Any]) -> str:
    """tomli-w's TOML, with short lists of numbers or strings on one line and each rule an inline table."""
    scalars = {k: v for k, v in recipe.items() if not isinstance(v, (dict, list))}
    parts = [tomli_w.dumps(scalars)] if scalars else []
    for key, value in recipe.items():
        if key in scalars:
            continue
        if key == "paramwise" and "rules" in value:
            parts.append(_paramwise(value))
        elif isinstance(value, list):
            parts.append("\n".join(f"[[{key}]]\n{tomli_w.dumps(entry)}" for entry in value))
        else:
            parts.append(tomli_w.dumps({key: value}))
    text = _one_line_arrays("\n".join(p.rstrip("\n") + "\n" for p in parts))
    if tomllib.loads(text) != recipe:  # the comment-free layout above must not change a value
        raise AssertionError("the recipe's TOML does not read back as the recipe")
    return text


def _paramwise(paramwise: dict[str, Any]) -> str:
    plain = {k: v for k, v in paramwise.items() if k != "rules"}
    text = tomli_w.dumps({"paramwise": plain}) + "\n" if plain else ""
    lines = ["[paramwise.rules]"]
    for glob, rule in paramwise["rules"].items():
        fields = ", ".join(f"{k} = {tomli_w.dumps({'v': v})[4:].strip()}" for k, v in rule.items())
        lines.append(f"{json.dumps(glob)} = {{ {fields} }}")
    return text + "\n".join(lines) + "\n"


_ARRAY = re.compile(r"\[\n((?:    [^\[\]{}\n]+,\n)+)\]")


def _one_line_arrays(text: str) -> str:
    def join(m: re.Match[str]) -> str:
        items = [line.strip().rstrip(",") for line in m[1].splitlines()]
        one = "[" + ", ".join(items) + "]"
        return one if len(one) <= 80 else m[0]

    return _ARRAY.sub(join, text)


def _wrapped(text: str, first: str, rest: str | None = None) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first,
        subsequent_indent=rest or first,
        break_long_words=False,
        break_on_hyphens=False,
    )
