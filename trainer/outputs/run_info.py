"""run_info.json: what a run needs to be reproduced (seed, versions of the core libraries, Python, the
project's git commit), and what changed between two resolved recipes."""

from __future__ import annotations

import json
import platform
import subprocess
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "timm", "accelerate", "datasets", "safetensors", "trainer")


def git_commit(path: Path) -> str | None:
    """The project's git commit (with "-dirty" for uncommitted changes), or None outside a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def write_run_info(output_dir: Path, cfg: dict[str, Any]) -> None:
    """Write run_info.json: seed, versions of the core libraries, Python, and the project's commit."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    info = {
        "seed": cfg["seed"],
        "versions": versions,
        "python": platform.python_version(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
    }
    (output_dir / "run_info.json").write_text(json.dumps(info, indent=1))


def recipe_changes(old_toml: str, new_toml: str) -> list[str]:
    """Keys whose values differ between two resolved recipes, as `key: old -> new` strings."""
    old, new = flat(tomllib.loads(old_toml)), flat(tomllib.loads(new_toml))
    missing = object()
    return [
        f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}"
        for k in sorted(old.keys() | new.keys())
        if old.get(k, missing) != new.get(k, missing)
    ]


def flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
