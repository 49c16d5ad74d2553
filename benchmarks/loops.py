"""The three loops on one case: (a) our `trainer.loop.train`, (b) a plain Accelerate loop, (c) plain PyTorch.

Each returns the samples/s of its timed windows by two clocks: the wall clock (for (a) the `metrics.jsonl`
records, for (b) and (c) windows ended by one `.item()`) and this process's CPU time between batch fetches.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

VARIANTS = ("trainer", "accelerate", "torch")
"""(a) our loop as `trainer.loop.train` runs it, (b) a plain Accelerate loop, (c) plain PyTorch."""

OPTIMIZER = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}

MAX_NORM = 1.0

TARGETS = {"accelerate": 0.98, "torch": 0.97}
"""Issue 7's targets for trainer / accelerate and trainer / torch throughput."""


OVERHEAD_MODEL = "bench_tiny"
"""A timm-registered model with almost no compute: a step's time is then the loop's own overhead."""


@dataclass(frozen=True, kw_only=True)
class Timing:
    """How a case runs and is timed; `BenchConfig` (scripts/benchmark.py's flags) inherits these defaults.

    A round of one loop runs `warmup_windows + timed_windows + 1` windows of about `window_batches`
    micro-batches; the last window only closes the CPU clock of the last timed one (see `cpu_windows`).
    """

    device: str = "cpu"
    threads: int = 1
    fused: bool = False
    rounds: int = 3
    timed_windows: int = 3
    warmup_windows: int = 1
    window_batches: int = 8


@dataclass(frozen=True)
class Case(Timing):
    """One throughput measurement: the same model, batch, data, precision and seeds for all three loops."""

    model: str
    image_size: int
    batch_size: int
    precision: str = "no"
    accumulate: int = 1
    seed: int = 0
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.window_steps * self.accumulate < 2:
            raise ValueError("a window needs at least 2 micro-batches (raise window_batches)")

    @property
    def window_steps(self) -> int:
        """Optimizer steps per window (the loop's `log_every`): about `window_batches` micro-batches."""
        return max(1, self.window_batches // self.accumulate)

    @property
    def steps_per_round(self) -> int:
        return self.window_steps * (self.warmup_windows + self.timed_windows + 1)

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.accumulate

    def optimizer_kwargs(self) -> dict[str, Any]:
        kwargs = {k: v for k, v in OPTIMIZER.items() if k != "type"}
        return {**kwargs, "fused": True} if self.fused else kwargs


@dataclass
class RoundResult:
    """Samples/s of one round's timed windows: by the wall clock and by this process's CPU time."""

    wall: list[float]
    cpu: list[float]


class SyntheticImages:
    """`length` random images cycling through a fixed in-memory pool: a batch is one indexing op, no I/O.

    Every batch fetch records this process's CPU time: a clock that the three loops share and that other
    processes on a busy machine disturb far less than the wall clock.
    """

    def __init__(self, length: int, image_size: int, num_classes: int, seed: int, pool: int = 256) -> None:
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(pool, 3, image_size, image_size, generator=generator)
        self.labels = torch.randint(0, num_classes, (pool,), generator=generator)
        self.length = length
        self.fetch_cpu: list[float] = []

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        j = index % len(self.labels)
        return self.images[j], self.labels[j]

    def __getitems__(self, indices: list[int]) -> tuple[Any, Any]:
        import torch

        self.fetch_cpu.append(time.process_time())
        j = torch.as_tensor(indices) % len(self.labels)
        return self.images[j], self.labels[j]


def pass_batch(batch: tuple[Any, Any]) -> tuple[Any, Any]:
    """collate_fn for SyntheticImages: `__getitems__` already returns the stacked batch."""
    return batch


def synthetic_loader(case: Case) -> Any:
    """A shuffled DataLoader of exactly one round's micro-batches (the loops end with it, no epoch turn)."""
    import torch
    from torch.utils.data import DataLoader

    batches = case.steps_per_round * case.accumulate
    data = SyntheticImages(batches * case.batch_size, case.image_size, case.num_classes, case.seed)
    return DataLoader(
        data,
        batch_size=case.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=pass_batch,
        generator=torch.Generator().manual_seed(case.seed),
    )


def cpu_windows(case: Case, fetch_cpu: list[float], lookahead: int) -> list[float]:
    """Samples/s of the timed windows by CPU time between batch fetches.

    Batch i is fetched `lookahead` batches before its step starts (Accelerate's loader fetches one ahead),
    so the window of micro-batches [a, b) runs from fetch a + lookahead to fetch b + lookahead.
    """
    per_window = case.window_steps * case.accumulate
    first = case.warmup_windows
    out = []
    for j in range(first, first + case.timed_windows):
        seconds = fetch_cpu[(j + 1) * per_window + lookahead] - fetch_cpu[j * per_window + lookahead]
        out.append(case.window_steps * case.samples_per_step / seconds)
    return out


def timed(case: Case, windows: list[float]) -> list[float]:
    """The timed windows of a round (warm-up and the closing window dropped)."""
    expected = case.warmup_windows + case.timed_windows + 1
    if len(windows) != expected:
        raise RuntimeError(f"expected {expected} windows, got {len(windows)}")
    return windows[case.warmup_windows : case.warmup_windows + case.timed_windows]


@lru_cache
def model_cfg(case: Case) -> dict[str, Any]:
    """`[model]` for the case: `img_size` only for models that take it (ViTs do, ConvNets do not)."""
    import timm
    import torch

    if case.model == OVERHEAD_MODEL:
        register_overhead_model()
    cfg: dict[str, Any] = {"name": case.model, "num_classes": case.num_classes}
    try:
        with torch.device("meta"):
            timm.create_model(
                case.model, pretrained=False, img_size=case.image_size, num_classes=case.num_classes
            )
    except TypeError:
        return cfg
    return {**cfg, "img_size": case.image_size}


def register_overhead_model() -> None:
    """Register `bench_tiny` with timm (once): an 8x8 patch conv stem, a LayerNorm and a linear head."""
    import timm
    from timm.models import register_model
    from torch import nn

    if timm.is_model(OVERHEAD_MODEL):
        return

    class TinyNet(nn.Module):
        def __init__(self, num_classes: int, in_chans: int) -> None:
            super().__init__()
            self.num_classes = num_classes
            self.pretrained_cfg = {"classifier": "head", "first_conv": "stem"}
            self.stem = nn.Conv2d(in_chans, 16, kernel_size=8, stride=8)
            self.norm = nn.LayerNorm(16)
            self.head = nn.Linear(16, num_classes)

        def forward(self, x: Any) -> Any:
            return self.head(self.norm(self.stem(x).mean((2, 3))))

    def bench_tiny(
        pretrained: bool = False,
        pretrained_cfg: Any = None,
        pretrained_cfg_overlay: Any = None,
        cache_dir: Any = None,
        num_classes: int = 10,
        in_chans: int = 3,
    ) -> nn.Module:
        return TinyNet(num_classes, in_chans)

    bench_tiny.__module__ = __name__
    register_model(bench_tiny)


def paramwise_rules(model: Any) -> dict[str, dict[str, float]]:
    """Rules every timm model matches: lr x10 on the classifier, x0.1 on the stem (its pretrained_cfg)."""
    names = [name for name, _ in model.named_parameters()]
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    rules = {}
    for key, mult in (("classifier", 10.0), ("first_conv", 0.1)):
        prefix = cfg.get(key)
        if isinstance(prefix, str) and any(n.startswith(prefix + ".") for n in names):
            rules[f"{prefix}.*"] = {"lr_mult": mult}
    return rules


def trainer_recipe(
    case: Case, output_dir: Path, rules: dict[str, Any], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The recipe of (a): paramwise rules, warmup + cosine, clipping, accumulation; no eval, one save;
    `extra` adds tables (the features section's [mixup], [ema])."""
    w = case.window_steps
    return (extra or {}) | {
        "seed": case.seed,
        "output_dir": str(output_dir),
        "model": model_cfg(case),
        "data": {"path": "synthetic", "batch_size": case.batch_size, "num_workers": 0},
        "train": {
            "max_steps": case.steps_per_round,
            "accumulate": case.accumulate,
            "precision": case.precision,
            "log_every": w,
        },
        "optimizer": {"type": OPTIMIZER["type"], **case.optimizer_kwargs()},
        "paramwise": {"norm_decay_mult": 0.0, "bias_decay_mult": 0.0, "rules": rules},
        "clip_grad": {"max_norm": MAX_NORM},
        "schedule": [
            {"type": "LinearLR", "start_factor": 0.01, "by_epoch": False, "end": w},
            {"type": "CosineAnnealingLR", "by_epoch": False, "begin": w},
        ],
        "eval": {"enabled": False},
        "checkpoint": {"interval": 100_000, "max_keep": 1},
    }


def seed_everything(seed: int) -> None:
    """What accelerate's set_seed does, without Accelerate (for the plain PyTorch loop)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_trainer(case: Case, workdir: Path, extra: dict[str, Any] | None = None) -> RoundResult:
    """(a): `trainer.loop.train` on the synthetic loader; wall samples/s from its metrics.jsonl records."""
    import tomli_w

    from trainer.model import build_model
    from trainer.recipe.load import load_recipe
    from trainer.run.loop import train

    workdir.mkdir(parents=True, exist_ok=True)
    rules = paramwise_rules(build_model(model_cfg(case), device="meta"))
    path = workdir / "recipe.toml"
    path.write_text(tomli_w.dumps(trainer_recipe(case, workdir / "run", rules, extra)))
    recipe = load_recipe(path)
    loader = synthetic_loader(case)
    code = train(recipe, dataloaders=(loader, None))
    if code != 0:
        raise RuntimeError(f"trainer.loop.train returned {code}")
    with (workdir / "run" / "metrics.jsonl").open() as f:
        records = [json.loads(line) for line in f if line.strip()]
    wall = [r["samples_per_sec"] for r in records if "samples_per_sec" in r]
    return RoundResult(timed(case, wall), cpu_windows(case, loader.dataset.fetch_cpu, lookahead=1))


def run_accelerate(case: Case) -> RoundResult:
    """(b): the Accelerate loop of Accelerate's examples, the same optimizer on `model.parameters()`."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from trainer.model import build_model

    accelerator = Accelerator(
        gradient_accumulation_steps=case.accumulate,
        mixed_precision=case.precision,
        cpu=case.device == "cpu",
    )
    set_seed(case.seed)
    model = build_model(model_cfg(case))
    optimizer = torch.optim.AdamW(model.parameters(), **case.optimizer_kwargs())
    data = synthetic_loader(case)
    model, optimizer, loader = accelerator.prepare(model, optimizer, data)
    model.train()
    clock = WindowClock(case)
    for images, labels in loader:
        with accelerator.accumulate(model):
            loss = F.cross_entropy(model(images), labels)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), MAX_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if accelerator.sync_gradients:
            clock.step(loss)
    accelerator.end_training()
    return RoundResult(timed(case, clock.samples_per_sec), cpu_windows(case, data.dataset.fetch_cpu, 1))


def run_torch(case: Case) -> RoundResult:
    """(c): plain PyTorch, torch.autocast for bf16, the loss divided by `accumulate` by hand."""
    import torch
    import torch.nn.functional as F

    from trainer.model import build_model

    device = torch.device(case.device)
    seed_everything(case.seed)
    model = build_model(model_cfg(case), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), **case.optimizer_kwargs())
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.precision == "bf16")
    model.train()
    clock = WindowClock(case)
    k = case.accumulate
    loader = synthetic_loader(case)
    for i, (images, labels) in enumerate(loader):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast:
            loss = F.cross_entropy(model(images), labels)
        (loss / k if k > 1 else loss).backward()
        if (i + 1) % k == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            clock.step(loss)
    return RoundResult(timed(case, clock.samples_per_sec), cpu_windows(case, loader.dataset.fetch_cpu, 0))


class WindowClock:
    """Wall samples/s over windows of `window_steps` optimizer steps, each ended by one `.item()`."""

    def __init__(self, case: Case) -> None:
        self.window = case.window_steps
        self.samples = case.window_steps * case.samples_per_step
        self.steps = 0
        self.samples_per_sec: list[float] = []
        self._start = time.perf_counter()

    def step(self, loss: Any) -> None:
        self.steps += 1
        if self.steps % self.window:
            return
        loss.item()
        now = time.perf_counter()
        self.samples_per_sec.append(self.samples / (now - self._start))
        self._start = now


def measure_case(case: Case, workdir: Path, profile_dir: Path | None = None) -> dict[str, Any]:
    """Interleaved rounds of the three loops (order rotated each round); per variant the timed windows,
    pooled over rounds. With `profile_dir`, the last round of each loop is cProfiled."""
    import torch

    torch.set_num_threads(case.threads)
    runners: dict[str, Callable[[int], RoundResult]] = {
        "trainer": lambda r: run_trainer(case, workdir / f"trainer_{r}"),
        "accelerate": lambda r: run_accelerate(case),
        "torch": lambda r: run_torch(case),
    }
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(case.rounds):
        for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
            if profile_dir is not None and r == case.rounds - 1:
                path = profile_dir / f"{case_id(case)}_{variant}.prof"
                result = _profiled(lambda run=runners[variant], r=r: run(r), path)
            else:
                result = runners[variant](r)
            wall[variant].extend(result.wall)
            cpu[variant].extend(result.cpu)
    return {
        "case": asdict(case),
        "window_steps": case.window_steps,
        "torch_threads": torch.get_num_threads(),
        "wall": wall,
        "cpu": cpu,
    }


def _profiled(fn: Callable[[], RoundResult], path: Path) -> RoundResult:
    import cProfile

    path.parent.mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile()
    result = profiler.runcall(fn)
    profiler.dump_stats(str(path))
    return result


def case_id(case: Case) -> str:
    fused = "_fused" if case.fused else ""
    return f"{case.model}_{case.image_size}px_b{case.batch_size}_{case.precision}_acc{case.accumulate}{fused}"


def summarize_case(raw: dict[str, Any]) -> dict[str, Any]:
    """Per clock (wall, cpu): median samples/s per loop, spread (IQR / median), ratios trainer / other."""
    case = raw["case"]
    row: dict[str, Any] = {
        "model": case["model"],
        "image_size": case["image_size"],
        "batch_size": case["batch_size"],
        "precision": case["precision"],
        "accumulate": case["accumulate"],
        "fused": case["fused"],
        "device": case["device"],
        "threads": raw["torch_threads"],
        "window_steps": raw["window_steps"],
        "windows_per_loop": len(raw["wall"]["trainer"]),
    }
    for clock in ("wall", "cpu"):
        medians = {v: statistics.median(w) for v, w in raw[clock].items()}
        ratios = {other: medians["trainer"] / medians[other] for other in ("accelerate", "torch")}
        row[clock] = {
            "samples_per_sec": {v: round(m, 2) for v, m in medians.items()},
            "spread": {v: round(_iqr(w) / medians[v], 4) for v, w in raw[clock].items()},
            "ratio_vs_accelerate": round(ratios["accelerate"], 4),
            "ratio_vs_torch": round(ratios["torch"], 4),
            "meets_target": all(ratios[o] >= t for o, t in TARGETS.items()),
            "windows": raw[clock],
        }
    return row


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]
