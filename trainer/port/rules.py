"""`paramwise_cfg.custom_keys` (substrings of MMPretrain's parameter names) -> `[paramwise.rules]` globs.

Each key is evaluated as MMEngine does (substring, longest key first, ties alphabetical) on the
MMPretrain name of every timm parameter; the parameters a key wins become globs on timm's names, and the
whole rule set is checked to give every parameter the key MMEngine gives it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

from trainer.optim.rules import RuleMatcher, precedence_order
from trainer.port.report import Report

RULE_ARGS = ("lr_mult", "decay_mult")


def winners(keys: Iterable[str], match_names: dict[str, str]) -> dict[str, str | None]:
    """{timm name: the custom key MMEngine applies to its match name, or None}."""
    order = precedence_order(keys)
    return {name: next((k for k in order if k in text), None) for name, text in match_names.items()}


def translate_custom_keys(
    custom_keys: dict[str, Any],
    timm_names: list[str],
    mm_names: dict[str, str] | None,
    model_name: str,
    key: str,
    report: Report,
) -> dict[str, dict[str, float]]:
    """{glob: {lr_mult, decay_mult}} for the recipe; keys that match nothing (or only by a guess) reported."""
    if mm_names is None:
        match_names = {n: f".{n}" for n in timm_names}
    else:
        match_names = mm_names
    won = winners(custom_keys, match_names)
    members: dict[str, list[str]] = {k: [] for k in custom_keys}
    for name, k in won.items():
        if k is not None:
            members[k].append(name)
    settings: dict[str, dict[str, float]] = {}
    for k, value in custom_keys.items():
        where = f"{key}.custom_keys[{k!r}]"
        if not members[k]:
            matched = [n for n, text in match_names.items() if k in text]
            if matched:
                report.note(
                    where, "every parameter it matches takes a longer key first (as in MMEngine): no rule"
                )
            elif mm_names is None:
                report.skip(
                    where,
                    f"no MMPretrain->timm parameter-name table for {model_name}, and no timm name "
                    "contains it: no rule",
                )
            else:
                report.skip(
                    where, f"matches no parameter of timm's {model_name} (MMEngine ignores it): no rule"
                )
            continue
        if mm_names is None:
            report.skip(
                where,
                f"no MMPretrain->timm parameter-name table for {model_name}: matched as a substring of "
                f"timm's names ({len(members[k])} parameters, e.g. {members[k][0]!r}); check with "
                "inspect_recipe.py",
            )
        settings[k] = _settings(value, where, report)
    chosen = {k: _globs(k, members[k], timm_names) for k in settings}
    if not _consistent(chosen, won, timm_names):
        chosen = {k: sorted(members[k]) for k in settings}
    rules: dict[str, dict[str, float]] = {}
    for k, globs in chosen.items():
        for glob in globs:
            rules[glob] = dict(settings[k])
        if len(globs) > 1 or globs[0] != k:
            report.note(f"{key}.custom_keys[{k!r}]", "-> " + ", ".join(repr(g) for g in _shown(globs)))
    return rules


def _settings(value: Any, where: str, report: Report) -> dict[str, float]:
    out: dict[str, float] = {}
    if not isinstance(value, dict):
        report.skip(where, f"expected a dict of multipliers, got {value!r}")
        return out
    for arg, v in value.items():
        if arg in RULE_ARGS and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[arg] = float(v)
        else:
            report.skip(f"{where}.{arg}", f"{v!r}: a rule sets only lr_mult and decay_mult")
    return out


def _shown(globs: list[str], n: int = 4) -> list[str]:
    return globs if len(globs) <= n else [*globs[: n - 1], f"... {len(globs) - n + 1} more"]


def _globs(key: str, members: list[str], names: list[str]) -> list[str]:
    """Few globs that match exactly `members` among `names`."""
    want = set(members)
    if len(want) == 1 and not _has_glob_chars(members[0]):
        return list(members)
    token = key.strip(".")
    if token and not _has_glob_chars(token):
        glob = f"*{token}*"
        if set(_match(glob, names)) == want:
            return [glob]
    return cover(want, names)


def cover(want: set[str], names: list[str]) -> list[str]:
    """Few globs matching exactly `want` among `names`: maximal module prefixes whose parameters are all
    wanted (`prefix.*`), numbers made `*` where safe."""
    prefixes: dict[str, bool] = {}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            p = ".".join(parts[:i])
            prefixes[p] = prefixes.get(p, True) and name in want
    globs: list[str] = []
    for name in sorted(want):
        parts = name.split(".")
        pure = [".".join(parts[:i]) for i in range(1, len(parts)) if prefixes[".".join(parts[:i])]]
        glob = f"{pure[0]}.*" if pure else name
        if glob not in globs:
            globs.append(glob)
    general: list[str] = []
    for glob in globs:
        wide = re.sub(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)", "*", glob)
        pick = wide if wide != glob and set(_match(wide, names)) <= want else glob
        if pick not in general:
            general.append(pick)
    return general


def _consistent(chosen: dict[str, list[str]], won: dict[str, str | None], names: list[str]) -> bool:
    """Every parameter's winning glob (recipe precedence) belongs to the key MMEngine gives it."""
    owner = {g: k for k, globs in chosen.items() for g in globs}
    if len(owner) != sum(len(g) for g in chosen.values()):
        return False
    matcher = RuleMatcher(list(owner))
    for name in names:
        glob = matcher.match(name)
        expected = won[name] if won[name] in chosen else None
        if (owner[glob] if glob is not None else None) != expected:
            return False
    return True


def _match(glob: str, names: list[str]) -> list[str]:
    regex = re.compile(fnmatch.translate(glob))
    return [n for n in names if regex.match(n)]


def _has_glob_chars(text: str) -> bool:
    return any(c in text for c in "*?[")
