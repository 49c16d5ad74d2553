"""The bad-input corpus: every malformed recipe or data configuration in tests/bad_inputs/ stops
scripts/train.py with exit code 2 and one stderr line `recipe error: <file>: <key.path>: <message>`,
no traceback, and an output directory that was not created or, where it existed, not changed.

A case states its expectation in header comments (see tests/bad_inputs/README.md):
`# expect: <key.path> | <message fragment>`, and optionally `# args:` (extra command-line arguments),
`# file:` (the file the line names when it is not the case: a base, or `--set`), `# stage: build | data`
(found when the model or the dataset is built) and `# dataset:` (what `{data_path}` stands for).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "bad_inputs"
TRAIN = ROOT / "scripts" / "train.py"
MIN_CORPUS_SIZE = 45
KINDS = ("syntax", "unknown", "type", "range", "name", "base", "override", "schedule", "combo", "data")
"""Case file names start with the kind of mistake (tests/bad_inputs/README.md)."""
SUBPROCESS_CASES = (
    "syntax_duplicate_key",
    "unknown_table_optimzer",
    "override_unknown_table",
    "combo_momentum_schedule_on_adagrad",
    "combo_rule_matches_no_parameter",
    "data_labels_out_of_range",
)
"""Representative cases also run as real processes: parse, --set, static check, model build, data."""

_HEADER = re.compile(rb"^# (expect|args|file|stage|dataset): (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    """One corpus file and what it must produce."""

    name: str
    key: str
    fragment: str
    args: tuple[str, ...] = ()
    file: str | None = None
    stage: str = "recipe"
    dataset: str = "tiny_parquet"

    def __str__(self) -> str:
        return self.name


def read_case(path: Path) -> Case:
    """Parse a case's header comments (bytes: one case is deliberately not UTF-8)."""
    headers = {k.decode(): v.decode().strip() for k, v in _HEADER.findall(path.read_bytes())}
    key, sep, fragment = headers.get("expect", "").partition(" | ")
    assert sep and key and fragment, f"{path.name}: needs '# expect: <key.path> | <message fragment>'"
    return Case(
        name=path.stem,
        key=key.strip(),
        fragment=fragment.strip(),
        args=tuple(shlex.split(headers.get("args", ""))),
        file=headers.get("file"),
        stage=headers.get("stage", "recipe"),
        dataset=headers.get("dataset", "tiny_parquet"),
    )


CASES = [read_case(path) for path in sorted(CORPUS.glob("*.toml"))]
STATIC_CASES = [case for case in CASES if case.stage != "data"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, make_tiny_dataset: Callable[..., str]) -> Path:
    """A copy of the corpus with `{data_path}` (per case) and `{corpus}` filled in."""
    datasets = {
        "tiny_parquet": make_tiny_dataset("parquet"),
        "train_only": make_tiny_dataset("parquet", splits=("train",)),
    }
    root = tmp_path_factory.mktemp("bad_inputs")
    shutil.copytree(CORPUS, root, dirs_exist_ok=True)
    for case in CASES:
        path = root / f"{case.name}.toml"
        text = path.read_bytes().replace(b"{data_path}", datasets[case.dataset].encode())
        path.write_bytes(text.replace(b"{corpus}", str(root).encode()))
    return root


@pytest.fixture(scope="module")
def train_main() -> Callable[[list[str]], int]:
    """scripts/train.py's `main`, imported from its path as the script runs it."""
    spec = importlib.util.spec_from_file_location("bad_inputs_train_script", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Cases that reach the loop create an Accelerator; its process-wide state must not leak to others."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def listing(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under `root` with its size, mtime and content hash (files)."""
    entries = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        is_file = path.is_file()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if is_file else ""
        entries[str(path.relative_to(root))] = (stat.st_size if is_file else 0, stat.st_mtime_ns, digest)
    return entries


def make_previous_run(output_dir: Path) -> None:
    """An output directory from an earlier run (recipe, metrics, one checkpoint), dated in the past."""
    checkpoint = output_dir / "checkpoints" / "step_00000006"
    checkpoint.mkdir(parents=True)
    (output_dir / "recipe.toml").write_text('[model]\nname = "test_resnet"\n')
    (output_dir / "metrics.jsonl").write_text('{"step": 6, "loss": 1.2}\n')
    (checkpoint / "manifest.json").write_text('{"files": {}}\n')
    for path in [*output_dir.rglob("*"), output_dir]:
        os.utime(path, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))


def expected_prefix(case: Case, corpus: Path) -> str:
    file = case.file if case.file == "--set" else str(corpus / (case.file or f"{case.name}.toml"))
    return f"recipe error: {file}: {case.key}: "


def assert_one_line_error(case: Case, corpus: Path, code: object, stderr: str) -> None:
    assert code == 2, f"{case}: exit code {code!r}, stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"{case}: expected one line on stderr, got {len(lines)}:\n{stderr}"
    prefix = expected_prefix(case, corpus)
    assert lines[0].startswith(prefix), f"{case}: expected {prefix!r}...\ngot {lines[0]!r}"
    assert case.fragment in lines[0][len(prefix) :], f"{case}: {case.fragment!r} not in {lines[0]!r}"


def run_in_process(main: Callable[[list[str]], int], argv: list[str], capfd) -> tuple[object, str]:
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capfd.readouterr().err


def test_corpus_has_enough_cases_covering_every_stage():
    assert len(CASES) >= MIN_CORPUS_SIZE
    assert {case.name.split("_")[0] for case in CASES} == set(KINDS)
    assert {case.stage for case in CASES} == {"recipe", "build", "data"}


@pytest.mark.parametrize("existing_output", [False, True], ids=["no_output_dir", "previous_run"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_training_stops_with_one_line_and_leaves_the_output_dir_alone(
    case, existing_output, corpus, train_main, tmp_path, monkeypatch, capfd
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    if existing_output:
        make_previous_run(cwd / "runs" / case.name)
    before, corpus_before = listing(cwd), listing(corpus)

    code, stderr = run_in_process(train_main, [str(corpus / f"{case.name}.toml"), *case.args], capfd)

    assert_one_line_error(case, corpus, code, stderr)
    assert listing(cwd) == before
    assert listing(corpus) == corpus_before
    if not existing_output:
        assert not (cwd / "runs").exists()


@pytest.mark.parametrize("case", STATIC_CASES, ids=str)
def test_dry_run_reports_the_same_line(case, corpus, train_main, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    argv = [str(corpus / f"{case.name}.toml"), *case.args, "--dry-run"]

    code, stderr = run_in_process(train_main, argv, capfd)

    assert_one_line_error(case, corpus, code, stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", [c for c in CASES if c.stage == "recipe"], ids=str)
def test_recipe_stage_cases_fail_in_load_recipe_before_anything_is_built(case, corpus):
    from trainer.errors import RecipeError
    from trainer.recipe.load import load_recipe

    overrides = [arg for flag, arg in zip(case.args, case.args[1:], strict=False) if flag == "--set"]
    with pytest.raises(RecipeError) as info:
        load_recipe(corpus / f"{case.name}.toml", overrides)
    assert info.value.key == case.key
    assert case.fragment in info.value.message


@pytest.fixture(scope="module")
def process_results(corpus, tmp_path_factory) -> dict[str, tuple[int, str, Path]]:
    """SUBPROCESS_CASES run as `python scripts/train.py CASE`, all at once: (exit code, stderr, cwd)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    running = {}
    for name in SUBPROCESS_CASES:
        case = next(c for c in CASES if c.name == name)
        cwd = tmp_path_factory.mktemp(f"proc_{name}")
        argv = [sys.executable, str(TRAIN), str(corpus / f"{name}.toml"), *case.args]
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        running[name] = (proc, cwd)
    results = {}
    try:
        for name, (proc, cwd) in running.items():
            _, stderr = proc.communicate(timeout=300)
            results[name] = (proc.returncode, stderr, cwd)
    finally:
        for proc, _ in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_a_real_process_exits_2_with_one_line_and_no_traceback(name, corpus, process_results):
    case = next(c for c in CASES if c.name == name)
    code, stderr, cwd = process_results[name]

    assert_one_line_error(case, corpus, code, stderr)
    assert list(cwd.iterdir()) == []
