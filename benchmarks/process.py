"""Fresh processes for measurements: `python -m benchmarks MODE SPEC OUT` with explicit thread counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: scripts/, recipes/ and data/ are found from here."""


def child_env(threads: int, device: str = "cpu") -> dict[str, str]:
    """Environment for a timed child process: explicit thread counts, offline, no launcher leftovers."""
    env = dict(os.environ)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    env = {k: v for k, v in env.items() if not k.startswith("ACCELERATE_")}
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # (a) puts itself on CUDA whenever it sees a GPU
    return env


def run_child(
    mode: str, spec: dict[str, Any], threads: int, device: str = "cpu", timeout: float = 900
) -> Any:
    """Run `python -m benchmarks MODE SPEC OUT` in a fresh process (cwd: the repository root) and return
    what it wrote to OUT."""
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "benchmarks", mode, json.dumps(spec), str(out)]
        proc = subprocess.run(
            cmd, cwd=ROOT, env=child_env(threads, device), capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
            raise RuntimeError(f"benchmark child {mode} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())
