"""scripts/slurm_train.sh on a real SLURM (tests/slurm/local_cluster.sh: slurmctld and two slurmd on this
host): a job stopped by its time limit, `scontrol requeue`, preemption or `scancel --signal=TERM` (every
process of the step, data workers on) checkpoints, requeues, resumes with --resume auto and ends COMPLETED
with the metrics and weights of the uninterrupted job; a 2-node job trains as 2 processes on one machine.

Skipped unless a cluster answers (`tests/slurm/local_cluster.sh up`, as root); see README, "SLURM".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runs import ROOT, assert_bit_equal, train_env

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SLURM_TRAIN = ROOT / "scripts" / "slurm_train.sh"
EPOCHS = 20
"""The quickstart for 20 epochs (440 steps, about 75 s on an idle 2-core machine): still running when a
2-minute time limit's warning comes, 90 s ahead (slurmctld checks time limits every 30 s or so)."""
REQUEUE_SETTLE_S = 8
"""A requeued job is held two minutes (BeginTime); the tests release it after these seconds (started at
once, its new credential can be revoked with the old attempt's)."""


def cluster_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


if not cluster_up():
    pytest.skip("no SLURM cluster answers here (tests/slurm/local_cluster.sh up)", allow_module_level=True)


def job_env() -> dict[str, str]:
    """A job runs with the submitting shell's environment: the checkout under test, offline, on the CPU."""
    env = train_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env["PYTHONPATH"]])
    return env


def submit(tmp_path: Path, name: str, *sbatch: str, workers: int = 0, epochs: int = EPOCHS) -> int:
    proc = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--chdir={ROOT}",
            f"--output={tmp_path / name}.out",
            f"--job-name={name}",
            *sbatch,
            str(SLURM_TRAIN),
            "recipes/quickstart.toml",
            "--set",
            f'output_dir="{tmp_path / name}"',
            f"train.epochs={epochs}",
            f"data.num_workers={workers}",
        ],
        env=job_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout.strip().split(";")[0])


def job(job_id: int) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def wait_for_step(log: Path, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = log.read_text() if log.is_file() else ""
        if any(m and int(m.group(1)) >= step for m in re.finditer(r"^step (\d+)/", text, re.M)):
            return
        time.sleep(0.5)
    raise AssertionError(f"never reached step {step}:\n{log.read_text()[-2000:] if log.is_file() else ''}")


def finish(job_id: int, timeout: float = 900) -> dict[str, str]:
    """Wait until the job is COMPLETED or failed; a requeued job's 2-minute BeginTime hold is cleared (the
    time a cluster would let pass), so that each requeue starts again at once."""
    deadline, held_since = time.time() + timeout, None
    while time.time() < deadline:
        info = job(job_id)
        state = info.get("JobState")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return info
        held = state == "PENDING" and info.get("Reason") == "BeginTime"
        held_since = (held_since or time.time()) if held else None
        if held and time.time() - held_since > REQUEUE_SETTLE_S:
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)
            held_since = None
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not end: {job(job_id)}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The quickstart as one uninterrupted job (one process, one data worker)."""
    tmp = tmp_path_factory.mktemp("slurm_reference")
    info = finish(submit(tmp, "reference", workers=1))
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "0", info
    return tmp / "reference"


def assert_resumed_to_the_same_end(tmp_path: Path, name: str, info: dict, uninterrupted: Path) -> str:
    log = (tmp_path / f"{name}.out").read_text()
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) >= 1, (info, log[-3000:])
    assert "resumed from" in log and "Traceback" not in log, log[-3000:]
    assert_bit_equal(uninterrupted, tmp_path / name, replays=True)
    return log


def test_a_time_limit_checkpoints_requeues_and_completes_as_the_uninterrupted_job(tmp_path, uninterrupted):
    job_id = submit(tmp_path, "limit", "--time=2", "--signal=USR1@90", workers=1)
    info = finish(job_id)
    log = assert_resumed_to_the_same_end(tmp_path, "limit", info, uninterrupted)
    assert "stopped by signal 10 after step" in log and "requeueing job" in log
    assert log.count("slurm_train.sh: job") == int(info["Restarts"]) + 1  # one log, appended to


def test_scancel_signal_term_to_every_process_with_data_workers_requeues_and_completes(
    tmp_path, uninterrupted
):
    job_id = submit(tmp_path, "scancel", workers=1)
    wait_for_step(tmp_path / "scancel.out", 30)
    subprocess.run(["scancel", "--signal=TERM", str(job_id)], check=True)
    info = finish(job_id)
    log = assert_resumed_to_the_same_end(tmp_path, "scancel", info, uninterrupted)
    assert "stopped by signal 15 after step" in log and "killed by signal" not in log


def test_scontrol_requeue_resumes_and_completes(tmp_path, uninterrupted):
    job_id = submit(tmp_path, "requeue", workers=1)
    wait_for_step(tmp_path / "requeue.out", 30)
    subprocess.run(["scontrol", "requeue", str(job_id)], check=True)
    info = finish(job_id)
    assert_resumed_to_the_same_end(tmp_path, "requeue", info, uninterrupted)


def test_preemption_by_a_higher_priority_partition_requeues_and_completes(tmp_path, uninterrupted):
    job_id = submit(tmp_path, "preempted", "--partition=debug", "--exclusive", workers=1)
    wait_for_step(tmp_path / "preempted.out", 30)
    node = job(job_id)["NodeList"]
    urgent = subprocess.run(
        ["sbatch", "--parsable", "--partition=urgent", "--exclusive", f"--nodelist={node}",
         f"--output={tmp_path / 'urgent.out'}", "--wrap", "sleep 5"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    info = finish(job_id)
    assert finish(int(urgent.stdout.strip()))["JobState"] == "COMPLETED"
    assert_resumed_to_the_same_end(tmp_path, "preempted", info, uninterrupted)


def test_a_two_node_job_stopped_by_its_time_limit_ends_as_two_processes_on_one_machine(tmp_path):
    """Two nodes, one process each (a rendezvous across them), stopped and requeued, against the same two
    processes started on one machine by scripts/launch.py."""
    job_id = submit(tmp_path, "nodes", "--nodes=2", "--time=2", "--signal=USR1@90")
    info = finish(job_id)
    log = (tmp_path / "nodes.out").read_text()
    assert info["JobState"] == "COMPLETED" and info["NodeList"] in ("n[1-2]", "n1,n2"), (info, log[-3000:])
    assert "2 node(s) x 1 process(es)" in log
    launch = [sys.executable, "scripts/launch.py", "--num_processes", "2", "scripts/train.py"]
    sets = [f'output_dir="{tmp_path / "local"}"', f"train.epochs={EPOCHS}", "data.num_workers=0"]
    local = subprocess.run(
        [*launch, "recipes/quickstart.toml", "--set", *sets],
        cwd=ROOT,
        env=job_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    if int(info["Restarts"]) >= 1:
        assert "resumed from" in log
    assert_bit_equal(tmp_path / "local", tmp_path / "nodes", replays=True)
