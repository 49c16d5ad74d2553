"""Helpers for end-to-end tests: a tiny learnable dataset, recipes around it, and runs of scripts/train.py."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "scripts" / "train.py"
HOOKS = ROOT / "tests" / "fixtures" / "hooks"
"""Modules a recipe's `imports` can name in tests (on PYTHONPATH in train_env); each does nothing unless its
TRAINER_TEST_* variable is set."""

SGD = 'type = "SGD"\nlr = 0.1\nmomentum = 0.9\nweight_decay = 1e-4'


def make_dataset(path: Path, n_train: int = 64, n_eval: int = 16, size: int = 16, classes: int = 4) -> Path:
    """A small learnable image dataset (one noisy colour per class), written with save_to_disk."""
    import numpy as np
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(classes, 3))

    def split(n: int) -> Dataset:
        labels = [i % classes for i in range(n)]
        images = []
        for label in labels:
            pixels = np.clip(colours[label] + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype("uint8")
            images.append(PILImage.fromarray(pixels))
        features = Features({"image": Image(), "label": ClassLabel(num_classes=classes)})
        return Dataset.from_dict({"image": images, "label": labels}, features=features)

    DatasetDict({"train": split(n_train), "validation": split(n_eval)}).save_to_disk(str(path))
    return path


def recipe_text(dataset: Path, output_dir: Path, *, imports: tuple[str, ...] = (), **overrides: str) -> str:
    sections = {
        "model": 'name = "test_vit"\nnum_classes = 4\nimg_size = 16\npatch_size = 4',
        "data": f'path = "{dataset}"\nbatch_size = 8\nnum_workers = 0\naugment = {{ no_aug = true }}',
        "train": "epochs = 2\nlog_every = 1",
        "optimizer": 'type = "AdamW"\nlr = 1e-3\nweight_decay = 0.05',
        "checkpoint": "interval = 1\nmax_keep = -1",
    }
    sections.update(overrides)
    body = "\n\n".join(f"[{name}]\n{text}" for name, text in sections.items() if text is not None)
    head = f'seed = 0\noutput_dir = "{output_dir}"\n'
    if imports:
        head += f"imports = {list(imports)!r}\n".replace("'", '"')
    return f"{head}\n{body}\n"


def train_command(recipe: Path, *args: str, nproc: int = 1) -> list[str]:
    """The command line of scripts/train.py, under torchrun when `nproc` > 1."""
    if nproc == 1:
        return [sys.executable, str(TRAIN), str(recipe), *args]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--standalone",
        str(TRAIN),
        str(recipe),
        *args,
    ]


NOT_INHERITED = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "ACCELERATE_MIXED_PRECISION",
)
"""A launcher's variables: a test run started from inside a launched process must neither join its job nor
take its precision."""


def train_env(gpu: bool = False, **extra: str) -> dict[str, str]:
    """Offline, one thread per process, no launcher (or test hook) variables leaking in from the parent, the
    test hooks importable, and `extra` on top.

    On the CPU unless `gpu`: CUDA_VISIBLE_DEVICES="" hides every GPU, so make_accelerator (cpu=not
    torch.cuda.is_available()) trains on the CPU even on a GPU machine. There the bit-for-bit comparisons
    hold (a GPU's kernels need not be deterministic) and two processes form a gloo group instead of fighting
    over one GPU. Tests marked `gpu` pass gpu=True.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for var in [*NOT_INHERITED, *(v for v in env if v.startswith("TRAINER_TEST_"))]:
        env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOKS), os.environ.get("PYTHONPATH")) if p)
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


def run(
    recipe: Path, *args: str, nproc: int = 1, expect: int = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run scripts/train.py to completion (in train_env() unless `env`) and check its exit code."""
    proc = subprocess.run(
        train_command(recipe, *args, nproc=nproc),
        env=train_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_run(
    tmp_path: Path,
    dataset: Path,
    name: str,
    *args: str,
    nproc: int = 1,
    env: dict[str, str] | None = None,
    imports: tuple[str, ...] = (),
    **sections: str,
) -> Path:
    out = tmp_path / name
    recipe = tmp_path / f"{name}.toml"
    recipe.write_text(recipe_text(dataset, out, imports=imports, **sections))
    run(recipe, *args, nproc=nproc, env=env)
    return out


@functools.cache
def script_main(name: str) -> Callable[[list[str]], int]:
    """scripts/<name>'s `main`, imported from its path as the script runs it."""
    path = ROOT / "scripts" / name
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@contextlib.contextmanager
def _cpu_single_thread() -> Iterator[None]:
    """As train_env() runs a script: on the CPU, one thread (so runs here and in a subprocess compute alike);
    the process-wide state a script leaves (Accelerate's, torch's threads) is put back."""
    import torch
    from accelerate.state import AcceleratorState, GradientState

    threads, previous = torch.get_num_threads(), os.environ.get("ACCELERATE_USE_CPU")
    torch.set_num_threads(1)
    os.environ["ACCELERATE_USE_CPU"] = "1"
    try:
        yield
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop("ACCELERATE_USE_CPU", None)
        else:
            os.environ["ACCELERATE_USE_CPU"] = previous


def call_main(script: str, argv: list, capfd=None) -> tuple[object, str, str]:
    """Run scripts/<script>'s main(argv) in this process: for what a run computes and writes, where no
    process boundary is under test (exit codes and signals of a real process are tested with `run`).
    Returns (exit code, stdout, stderr) as the script would have them: read through pytest's `capfd`, or,
    without it (a module fixture), from Python's sys.stdout and sys.stderr."""
    main = script_main(script)
    out, err = io.StringIO(), io.StringIO()
    if capfd is not None:
        capfd.readouterr()
        redirect: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        redirect = contextlib.ExitStack()
        redirect.enter_context(contextlib.redirect_stdout(out))
        redirect.enter_context(contextlib.redirect_stderr(err))
    argv0, sys.argv[0] = sys.argv[0], str(ROOT / "scripts" / script)  # as Python runs the script
    with redirect, _cpu_single_thread():
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:
            code = stop.code
        finally:
            sys.argv[0] = argv0
    if capfd is not None:
        return (code, *capfd.readouterr())
    return code, out.getvalue(), err.getvalue()


def train_in_process(
    tmp_path: Path, dataset: Path, name: str, *args: str, capfd=None, expect: int = 0, **sections: str
) -> Path:
    """train_run's run of scripts/train.py, in this process (see call_main); no recipe `imports` hooks: they
    patch the process they are imported into."""
    out = tmp_path / name
    recipe = tmp_path / f"{name}.toml"
    recipe.write_text(recipe_text(dataset, out, **sections))
    code, stdout, stderr = call_main("train.py", [recipe, *args], capfd)
    assert code == expect, stdout[-3000:] + stderr[-3000:]
    return out


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, sessions of their own included (torchrun's and scripts/launch.py's
    workers: killpg misses them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def comparable(out: Path) -> list[dict]:
    """The metrics.jsonl records without `samples_per_sec` (a clock reading, never reproducible)."""
    return [{k: v for k, v in r.items() if k != "samples_per_sec"} for r in records(out)]


def without_replays(log: list[dict]) -> list[dict]:
    """A log as the uninterrupted run writes it. A run killed after logging steps past its last checkpoint
    logs them again when resumed; each repeated record must equal the one it repeats and is kept once."""
    kept: dict[tuple, dict] = {}
    for record in log:
        key = (record["step"], tuple(sorted(record)))
        assert kept.setdefault(key, record) == record, f"replayed record differs: {kept[key]} != {record}"
    return list(kept.values())


def assert_bit_equal(a: Path, b: Path, *, since_step: int = 0, replays: bool = False) -> None:
    """Runs `a` and `b` are the same run: every metrics.jsonl record with a step after `since_step`
    (`samples_per_sec` aside) compared step by step, and every final weight bit for bit (torch.equal).

    `since_step`: `b` was resumed from that step in a fresh directory. `replays`: `b` was killed and resumed,
    so it may log the steps between its last checkpoint and the kill twice (see without_replays).
    """
    log_a, log_b = comparable(a), comparable(b)
    if replays:
        log_b = without_replays(log_b)
    log_a = [r for r in log_a if r["step"] > since_step]
    log_b = [r for r in log_b if r["step"] > since_step]
    assert log_a, f"{a} logged nothing after step {since_step}"
    assert len(log_a) == len(log_b), ([r["step"] for r in log_a], [r["step"] for r in log_b])
    for ra, rb in zip(log_a, log_b, strict=True):
        assert ra == rb, f"step {ra['step']}: {ra} != {rb}"
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == [], "weights differ"


def assert_close_weights(a: Path, b: Path, *, atol: float, rtol: float) -> None:
    """Final weights equal to a tolerance, for runs that are the same computation in another summation order
    (callers say which); bit-equality claims use assert_bit_equal."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=rtol, msg=k)
