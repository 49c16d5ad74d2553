"""Setup costs: optimizer + paramwise construction, a whole schedule, imports, start to the first step.

The sizes measured are the defaults of `optimizer_setup_cost` and `schedule_cost`."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.loops import OPTIMIZER
from benchmarks.process import ROOT, child_env

REPEAT = 3
"""Builds per setup measurement; the median is reported."""


def optimizer_setup_cost(depth: int = 250, rules: int = 48, repeat: int = REPEAT) -> list[dict[str, Any]]:
    """build_optimizer on a ViT with `depth` blocks (12 tensors each) on the meta device and `rules` globs."""
    import timm
    import torch

    from trainer.optim import build_optimizer

    with torch.device("meta"):
        model = timm.create_model("vit_small_patch16_224", depth=depth, pretrained=False)
    tensors = len(list(model.parameters()))
    globs = make_rules(depth, rules)
    optimizer_cfg = dict(OPTIMIZER)
    paramwise = {"norm_decay_mult": 0.0, "bias_decay_mult": 0.0, "rules": globs}
    cases = {
        "default_no_rules": lambda: build_optimizer(model, optimizer_cfg, {}),
        "default_rules": lambda: build_optimizer(model, optimizer_cfg, paramwise),
        "layer_decay_rules": lambda: build_optimizer(
            model, {**optimizer_cfg, "constructor": {"type": "LayerDecay", "decay_rate": 0.75}}, paramwise
        ),
    }
    results = []
    for name, fn in cases.items():
        times, optimizer = _timed(fn, repeat)
        results.append(
            {
                "case": name,
                "tensors": tensors,
                "rules": 0 if name == "default_no_rules" else len(globs),
                "groups": len(optimizer.param_groups),
                "median_s": round(statistics.median(times), 4),
                "target_s": 0.5,
            }
        )
    return results


def make_rules(depth: int, count: int) -> dict[str, dict[str, float]]:
    """`count` globs of the kind recipes use: per-block lr multipliers plus a few name-pattern rules."""
    fixed = {
        "*.norm*": {"decay_mult": 0.0},
        "*.bias": {"decay_mult": 0.0},
        "pos_embed": {"decay_mult": 0.0},
        "cls_token": {"decay_mult": 0.0},
        "head.*": {"lr_mult": 10.0},
        "patch_embed.*": {"lr_mult": 0.1},
    }
    step = max(1, depth // max(1, count - len(fixed)))
    per_block = {f"blocks.{i}.attn.*": {"lr_mult": 0.5 + i / (2 * depth)} for i in range(0, depth, step)}
    return dict(list(per_block.items())[: count - len(fixed)]) | fixed


SCHEDULE_ENTRIES = [
    {"type": "LinearLR", "start_factor": 1e-3, "by_epoch": True, "end": 5, "convert_to_iter_based": True},
    {
        "type": "CosineAnnealingLR",
        "by_epoch": True,
        "begin": 5,
        "eta_min_ratio": 1e-2,
        "convert_to_iter_based": True,
    },
    {"type": "CosineAnnealingMomentum", "eta_min": 0.95, "by_epoch": False},
]
"""A ViT-style schedule: warmup and cosine converted from epochs to steps, plus a per-step momentum cosine."""


def schedule_cost(steps: int = 1_000_000, groups: int = 28, repeat: int = REPEAT) -> dict[str, Any]:
    """Build a whole `steps`-step schedule for `groups` param groups; time one `apply` per step."""
    import torch

    from trainer.schedule import build_schedule

    epochs = 100
    param_groups = [
        {
            "params": [torch.nn.Parameter(torch.zeros(1))],
            "lr": 1e-3 * 0.65 ** (i // 2),
            "betas": (0.9, 0.999),
            "weight_decay": 0.05 * (i % 2),
        }
        for i in range(groups)
    ]
    optimizer = torch.optim.AdamW(param_groups)
    times, schedule = _timed(
        lambda: build_schedule(
            SCHEDULE_ENTRIES,
            param_groups=optimizer.param_groups,
            steps_per_epoch=steps // epochs,
            train_cfg={"epochs": epochs},
        ),
        repeat,
    )
    calls = 20_000
    stride = max(1, schedule.total_steps // calls)
    start = time.perf_counter()
    for step in range(0, stride * calls, stride):
        schedule.apply(optimizer, step)
    apply_us = (time.perf_counter() - start) / calls * 1e6
    return {
        "total_steps": schedule.total_steps,
        "param_groups": groups,
        "schedulers": len(SCHEDULE_ENTRIES),
        "build_s": round(statistics.median(times), 4),
        "apply_us": round(apply_us, 2),
        "target_s": 1.0,
    }


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def startup_phases(recipe_path: str, overrides: list[str]) -> dict[str, float]:
    """Seconds of each phase from interpreter start to the first optimizer step, in `train()`'s order.

    Runs in a fresh process: the imports are the real cold imports of `scripts/train.py`; the set-up is the
    loop's own `trainer.build.build_run`.
    """
    phases: dict[str, float] = {}
    clock = _PhaseClock(phases)
    clock.mark("interpreter", since=_process_start())
    import torch.nn.functional as F

    import trainer.run.loop  # noqa: F401  (what scripts/train.py imports; trainer.build comes with it)
    from trainer.run.build import build_run, make_accelerator

    clock.mark("import trainer.run.loop")
    from accelerate.utils import set_seed

    from trainer.data.transforms import batch_normalizer
    from trainer.recipe.load import load_recipe
    from trainer.run.runtime import resolve_precision

    recipe = load_recipe(recipe_path, overrides)
    clock.mark("load_recipe (validate)")
    accelerator = make_accelerator(recipe, resolve_precision(recipe.cfg["train"]))
    set_seed(recipe.cfg["seed"])
    clock.mark("Accelerator")
    run = build_run(recipe, accelerator)
    clock.mark("build_run (model, data, optimizer, prepare, schedule)")
    run.model.train()
    images, labels = next(iter(run.train_dl))
    clock.mark("first batch (workers start)")
    loss = F.cross_entropy(run.model(batch_normalizer(run.train_dl, images.device)(images)), labels)
    accelerator.backward(loss)
    run.optimizer.step()
    run.optimizer.zero_grad()
    loss.item()
    clock.mark("first step")
    phases["total"] = round(sum(phases.values()), 3)
    return phases


class _PhaseClock:
    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.last = time.time()

    def mark(self, name: str, since: float | None = None) -> None:
        now = time.time()
        self.phases[name] = round(now - (self.last if since is None else since), 3)
        self.last = now


def _process_start() -> float:
    """Wall-clock time this process started (Linux /proc; else now)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return time.time()


IMPORT_FLOOR = "torch, timm, accelerate"
"""What any script that trains a timm model with Accelerate imports: the floor under our import cost."""


def import_cost(modules: str, threads: int, top: int = 6) -> dict[str, Any]:
    """`python -X importtime -c "import MODULES"`: total seconds and the top-level packages that take most
    (each module's own time, summed per top-level package)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {modules}"],
        cwd=ROOT,
        env=child_env(threads),
        capture_output=True,
        text=True,
        timeout=300,
    )
    own: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            package = m.group(2).split(".")[0]
            own[package] = own.get(package, 0.0) + int(m.group(1)) / 1e6
    heaviest = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {
        "import": modules,
        "total_s": round(sum(own.values()), 3),
        "top": [{"package": name, "seconds": round(sec, 3)} for name, sec in heaviest],
    }


def time_to_first_step(recipe: str, threads: int) -> dict[str, Any]:
    """Wall seconds from starting `scripts/train.py RECIPE` to its first metrics record (after step 1).

    The run logs every step with eval off and is stopped once the first record appears.
    """
    with tempfile.TemporaryDirectory(prefix="bench_first_step_") as tmp:
        output_dir = Path(tmp) / "run"
        overrides = ["train.log_every=1", "eval.enabled=false", f'output_dir="{output_dir}"']
        cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), recipe, "--set", *overrides]
        metrics = output_dir / "metrics.jsonl"
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=child_env(threads),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            elapsed = _wait_for_line(metrics, proc, start, timeout=300)
        finally:
            if proc.poll() is None:
                proc.terminate()
            _, stderr = proc.communicate(timeout=60)
        if elapsed is None:
            tail = "\n".join(stderr.strip().splitlines()[-10:])
            raise RuntimeError(f"scripts/train.py wrote no metrics record (exit {proc.returncode}):\n{tail}")
    return {
        "command": " ".join(["scripts/train.py", recipe, "--set", *overrides[:2]]),
        "seconds": round(elapsed, 3),
    }


def _wait_for_line(path: Path, proc: subprocess.Popen, start: float, timeout: float) -> float | None:
    while time.perf_counter() - start < timeout:
        if path.is_file() and path.read_text().strip():
            return time.perf_counter() - start
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    return None
