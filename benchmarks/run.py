"""What `scripts/benchmark.py` runs: the sections, each measured in fresh processes, printed as they come."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.data import recommend_loader
from benchmarks.loops import OVERHEAD_MODEL, Case, Timing, summarize_case
from benchmarks.process import run_child
from benchmarks.setup import IMPORT_FLOOR, import_cost, time_to_first_step

SECTIONS = ("throughput", "overhead", "setup", "data", "features")

QUICKSTART = "recipes/quickstart.toml"
"""The recipe of the setup section's start-to-first-step runs and the data section's default."""

OVERHEAD_CASE = {"image_size": 8, "batch_size": 2, "window_batches": 48, "rounds": 4}
"""The overhead section's cases: `bench_tiny` on 8x8 images, long windows (a micro-batch takes ~1 ms)."""

OTHER_IMAGE_SIZE = 224
"""The input size of a model named on the command line that `default_image_size` does not list."""


@dataclass(frozen=True, kw_only=True)
class BenchConfig(Timing):
    """Everything `run_benchmark` measures; its defaults are scripts/benchmark.py's."""

    models: list[tuple[str, int]] = field(default_factory=lambda: [("test_vit", 64), ("test_convnext", 64)])
    """(timm name, image size): timm's small test ViT and ConvNet; at 64 px and batch 16 a CPU step takes
    20-40 ms on one thread."""
    batch_size: int = 16
    precisions: list[str] = field(default_factory=lambda: ["no", "bf16"])
    accumulates: list[int] = field(default_factory=lambda: [1, 4])
    sections: list[str] = field(default_factory=lambda: ["throughput", "setup"])
    loader_settings: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"num_workers": 0},
            {"num_workers": 1},
            {"num_workers": 1, "prefetch_factor": 4},
            {"num_workers": 2},
        ]
    )
    """DataLoader options the data section tries, one after the other."""
    data_epochs: int = 2
    data_tree_files: int = 200_000
    """Files of the generated class-folder tree the start-up is measured on."""
    data_images: int = 1000
    """500x375 JPEGs the loader throughput against timm's is measured on."""
    data_recipe: str = QUICKSTART
    profile_dir: str | None = None

    def cases(self) -> list[Case]:
        """The throughput section's cases."""
        return self._cases(self.models, batch_size=self.batch_size)

    def overhead_cases(self) -> list[Case]:
        """The overhead section's cases: the three loops around a model with almost no compute."""
        sizes = {k: v for k, v in OVERHEAD_CASE.items() if k != "image_size"}
        return self._cases([(OVERHEAD_MODEL, OVERHEAD_CASE["image_size"])], **sizes)

    def _cases(self, models: list[tuple[str, int]], **sizes: Any) -> list[Case]:
        """Every (model, precision, accumulate) combination, timed as this config says unless `sizes` says
        otherwise."""
        timing = {f.name: getattr(self, f.name) for f in fields(Timing)} | sizes
        return [
            Case(model=name, image_size=size, precision=precision, accumulate=accumulate, **timing)
            for name, size in models
            for precision in self.precisions
            for accumulate in self.accumulates
        ]


def default_image_size(model: str) -> int:
    """The input size of `model` when --image-size is not given: the default models' size, bench_tiny's 8,
    else OTHER_IMAGE_SIZE."""
    sizes = dict(BenchConfig().models) | {OVERHEAD_MODEL: OVERHEAD_CASE["image_size"]}
    return sizes.get(model, OTHER_IMAGE_SIZE)


def run_benchmark(config: BenchConfig, print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the chosen sections, printing each result as it comes; returns everything as plain data."""
    results: dict[str, Any] = {"machine": machine(), "config": asdict(config)}
    print_fn(report.format_machine(results["machine"], config.device, config.threads))
    if "throughput" in config.sections:
        print_fn(report.THROUGHPUT_HEADER)
        rows = []
        profile_dir = Path(config.profile_dir) if config.profile_dir else None
        for case in config.cases():
            rows.append(benchmark_case(case, profile_dir))
            print_fn(report.format_throughput_row(rows[-1]))
        results["throughput"] = rows
        results["meets_targets"] = {c: all(r[c]["meets_target"] for r in rows) for c in ("wall", "cpu")}
        print_fn(report.format_ratio_summary(rows))
    if "overhead" in config.sections:
        print_fn(report.OVERHEAD_HEADER)
        rows = []
        for case in config.overhead_cases():
            rows.append(overhead_row(benchmark_case(case)))
            print_fn(report.format_overhead_row(rows[-1]))
        results["overhead"] = rows
    if "setup" in config.sections:
        results["setup"] = measure_setup(config.threads)
        print_fn(report.format_setup(results["setup"]))
    if "data" in config.sections:
        spec = {
            "recipe": config.data_recipe,
            "settings": config.loader_settings,
            "epochs": config.data_epochs,
        }
        data = run_child("data", {**spec, "skip": 2}, config.threads)
        data["recommended"] = recommend_loader(data["settings"])
        data["scale"] = run_child(
            "data_scale", {"files": config.data_tree_files, "images": config.data_images}, 1
        )
        results["data"] = data
        print_fn(report.format_data(data))
    if "features" in config.sections:
        case = config.cases()[0]  # the first model, fp32, no accumulation
        case = replace(case, precision="no", accumulate=1)
        results["features"] = run_child("features", {"case": asdict(case)}, case.threads, case.device)
        print_fn(report.format_features(results["features"]))
    return results


def benchmark_case(case: Case, profile_dir: Path | None = None) -> dict[str, Any]:
    """Measure one case in its own process and summarize it."""
    spec = {"case": asdict(case), "profile_dir": str(profile_dir) if profile_dir else None}
    return summarize_case(run_child("case", spec, case.threads, case.device))


def measure_setup(threads: int) -> dict[str, Any]:
    """Optimizer and schedule construction, the import cost, and the quickstart's time to its first step."""
    setup = run_child("setup", {}, threads)
    phases_spec = {"recipe": QUICKSTART, "overrides": ["eval.enabled=false"]}
    setup["startup_phases"] = run_child("phases", phases_spec, threads)
    setup["imports"] = import_cost("trainer.loop", threads)
    setup["imports_floor"] = import_cost(IMPORT_FLOOR, threads)
    setup["first_step"] = time_to_first_step(QUICKSTART, threads)
    return setup


def overhead_row(row: dict[str, Any]) -> dict[str, Any]:
    """Microseconds per micro-batch of each loop (CPU time; the model costs almost nothing) and the
    differences: what (a) adds to (b), and what Accelerate adds to plain PyTorch."""
    us = {v: 1e6 * row["batch_size"] / sps for v, sps in row["cpu"]["samples_per_sec"].items()}
    return {
        "precision": row["precision"],
        "accumulate": row["accumulate"],
        "us_per_micro_batch": {v: round(x, 1) for v, x in us.items()},
        "trainer_minus_accelerate_us": round(us["trainer"] - us["accelerate"], 1),
        "trainer_minus_torch_us": round(us["trainer"] - us["torch"], 1),
        "accelerate_minus_torch_us": round(us["accelerate"] - us["torch"], 1),
        "spread": row["cpu"]["spread"],
        "throughput_row": row,
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import accelerate
    import timm
    import torch

    return {
        "cpu": _cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "accelerate": accelerate.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
