"""Printable tables of the benchmark's results."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.loops import OVERHEAD_MODEL, TARGETS

THROUGHPUT_HEADER = (
    f"{'':48s} {'wall clock samples/s':^32s}  {'CPU-time samples/s':^32s}\n"
    f"{'model':24s} {'px':>4s} {'batch':>5s} {'prec':>4s} {'acc':>3s} {'thr':>3s}"
    + f" {'trainer':>8s} {'accel':>8s} {'torch':>8s} {'a/b':>6s} {'a/c':>6s} {'noise':>5s}"
    * 2
)


def format_throughput_row(row: dict[str, Any]) -> str:
    text = (
        f"{row['model']:24s} {row['image_size']:4d} {row['batch_size']:5d} {row['precision']:>4s}"
        f" {row['accumulate']:3d} {row['threads']:3d}"
    )
    for clock in ("wall", "cpu"):
        r = row[clock]
        sps = r["samples_per_sec"]
        text += (
            f" {sps['trainer']:8.1f} {sps['accelerate']:8.1f} {sps['torch']:8.1f}"
            f" {r['ratio_vs_accelerate']:6.3f} {r['ratio_vs_torch']:6.3f} {max(r['spread'].values()):5.1%}"
        )
    return text + ("" if row["cpu"]["meets_target"] else "  < target")


def format_ratio_summary(rows: list[dict[str, Any]]) -> str:
    lines = []
    for clock in ("wall", "cpu"):
        ab = [r[clock]["ratio_vs_accelerate"] for r in rows]
        ac = [r[clock]["ratio_vs_torch"] for r in rows]
        lines.append(
            f"{clock:>4s}: trainer/accelerate min {min(ab):.3f} median {statistics.median(ab):.3f}"
            f" (target >= {TARGETS['accelerate']}); trainer/torch min {min(ac):.3f}"
            f" median {statistics.median(ac):.3f} (target >= {TARGETS['torch']})"
        )
    lines.append("noise = the largest IQR/median of the three loops' windows")
    return "\n".join(lines)


OVERHEAD_HEADER = (
    f"loop overhead, CPU us per micro-batch ({OVERHEAD_MODEL}: almost no compute)\n"
    f"{'prec':>4s} {'acc':>3s} {'trainer':>8s} {'accel':>8s} {'torch':>8s}"
    f" {'a-b':>7s} {'a-c':>7s} {'b-c':>7s} {'noise':>5s}"
)


def format_overhead_row(row: dict[str, Any]) -> str:
    us = row["us_per_micro_batch"]
    return (
        f"{row['precision']:>4s} {row['accumulate']:3d} {us['trainer']:8.0f} {us['accelerate']:8.0f}"
        f" {us['torch']:8.0f} {row['trainer_minus_accelerate_us']:7.0f} {row['trainer_minus_torch_us']:7.0f}"
        f" {row['accelerate_minus_torch_us']:7.0f} {max(row['spread'].values()):5.1%}"
    )


def format_machine(info: dict[str, Any], device: str, threads: int) -> str:
    where = info["cuda"] if device == "cuda" else f"{info['cpu']} ({info['cpus']} CPUs)"
    return (
        f"{where}; torch {info['torch']}, timm {info['timm']}, accelerate {info['accelerate']};"
        f" OMP_NUM_THREADS={threads}; load average {info['load_avg']}"
    )


def format_setup(setup: dict[str, Any]) -> str:
    lines = ["setup costs:"]
    for r in setup["optimizer"]:
        lines.append(
            f"  build_optimizer {r['case']:18s} {r['tensors']} tensors, {r['rules']:2d} rules -> "
            f"{r['groups']:4d} groups: {r['median_s'] * 1e3:7.1f} ms (target < {r['target_s'] * 1e3:.0f} ms)"
        )
    s = setup["schedule"]
    lines.append(
        f"  build_schedule {s['total_steps']} steps x {s['param_groups']} groups,"
        f" {s['schedulers']} schedulers: {s['build_s'] * 1e3:.0f} ms (target < {s['target_s'] * 1e3:.0f} ms);"
        f" apply {s['apply_us']:.1f} us/step"
    )
    for imports in (setup["imports"], setup["imports_floor"]):
        top = ", ".join(f"{t['package']} {t['seconds']:.2f}" for t in imports["top"])
        lines.append(f"  import {imports['import']}: {imports['total_s']:.2f} s ({top})")
    phases = ", ".join(f"{k} {v:.2f}" for k, v in setup["startup_phases"].items() if k != "total")
    lines.append(f"  start to first step, by phase: {setup['startup_phases']['total']:.2f} s ({phases})")
    first = setup["first_step"]
    lines.append(f"  {first['command']}: first step after {first['seconds']:.2f} s")
    return "\n".join(lines)


def format_data(data: dict[str, Any]) -> str:
    lines = [
        f"data path: {data['recipe']} ({data['model']}, batch {data['batch_size']}, {data['epochs']} epochs,"
        f" {data['torch_threads']} torch threads)",
        f"  {'workers':>7s} {'prefetch':>8s} {'persist':>7s} {'pin':>5s} {'first':>7s} {'wait':>6s}"
        f" {'wait ms':>8s} {'step ms':>8s} {'samples/s':>9s}",
    ]
    for s in data["settings"]:
        lines.append(
            f"  {s['num_workers']:7d} {str(s['prefetch_factor'] or '-'):>8s}"
            f" {str(s['persistent_workers']):>7s}"
            f" {str(s['pin_memory']):>5s} {s['first_batch_s']:6.2f}s {s['wait_fraction']:6.1%}"
            f" {s['median_wait_ms']:8.2f} {s['median_step_ms']:8.2f} {s['samples_per_sec']:9.1f}"
        )
    for row in data.get("seeding", []):
        rate = row["images_per_sec"]
        lines.append(
            f"  per-sample seeded augmentation, {row['num_workers']} worker(s): {rate['seeded']:.0f} vs"
            f" {rate['unseeded']:.0f} images/s unseeded = {row['ratio']:.3f}x"
        )
    scale = data.get("scale")
    if scale:
        up = scale["startup"]
        per = up["ms_per_file"]
        lines.append(
            f"  start-up on {up['files']:,} files: timm's scan {per['timm_scan']:.4f} ms/file, ours first"
            f" {per['ours_first_start']:.4f} ({up['first_start_vs_timm']:.2f}x timm), second"
            f" {per['ours_second_start']:.5f} ms/file"
        )
        for row in scale["throughput"]:
            rate = row["images_per_sec"]
            lines.append(
                f"  loader vs timm's, {row['num_workers']} worker(s), {row['images']} JPEGs of"
                f" {row['mean_kib']} KiB: {rate['ours']:.1f} vs {rate['timm']:.1f} images/s ="
                f" {row['ratio_vs_timm']:.3f}x"
            )
    rec = data["recommended"]
    lines.append(
        f"  recommended: num_workers={rec['num_workers']}"
        + (f", prefetch_factor={rec['prefetch_factor']}" if rec["prefetch_factor"] else "")
        + f" (waits {rec['wait_fraction']:.1%} of the step; rule: wait <= 5%, then the fewest workers"
        " within 3% of the best throughput)"
    )
    return "\n".join(lines)


def format_features(features: dict[str, Any]) -> str:
    lines = [
        f"recipe features: our loop on {features['model']} {features['image_size']}px, batch"
        f" {features['batch_size']}, against the same recipe without them (samples/s, ratio)"
    ]
    for name, rate in features["wall"]["samples_per_sec"].items():
        ratio = features["wall"]["ratio_vs_plain"][name]
        cpu_ratio = features["cpu"]["ratio_vs_plain"][name]
        lines.append(f"  {name:18s} {rate:9.1f}  {ratio:.3f}x wall  {cpu_ratio:.3f}x cpu")
    return "\n".join(lines)
