"""scripts/launch.py, the README's launcher: whatever starts the trainer, the outermost process exits with the
trainer's code and passes SIGTERM/SIGUSR1 on to every training process, which checkpoints and exits 75;
data workers outlive a signal to every process; no process is left behind; two machines train as two
processes on one. Every run here is a real process tree, signalled from outside."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runs import (
    ROOT,
    SGD,
    TRAIN,
    assert_bit_equal,
    descendants,
    make_dataset,
    recipe_text,
    records,
    train_env,
)
from trainer.errors import EXIT_BAD_INPUT, EXIT_PREEMPTED
from trainer.launch import main as launch_main
from trainer.run.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow

LAUNCH = ROOT / "scripts" / "launch.py"
SECTIONS = {
    "train": "max_steps = 8\nlog_every = 1\nsignal_check_every = 2",
    "checkpoint": "interval = 4\nmax_keep = -1",
    "eval": "enabled = false",
    "optimizer": SGD,
}
"""8 steps of 2 processes x batch 4 (8 per process and epoch on 64 samples), a checkpoint every 4."""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


def write_recipe(tmp_path: Path, dataset: Path, name: str, workers: int = 0, **extra: str) -> Path:
    data = f'path = "{dataset}"\nbatch_size = 4\nnum_workers = {workers}\naugment = {{ no_aug = true }}'
    path = tmp_path / f"{name}.toml"
    path.write_text(
        recipe_text(
            dataset, tmp_path / name, imports=("pause_at_step",), **{**SECTIONS, "data": data, **extra}
        )
    )
    return path


def launch_command(recipe: Path, *args: str, nproc: int = 2, machines: tuple[int, int] | None = None) -> list:
    command = [sys.executable, str(LAUNCH), "--num_processes", str(nproc)]
    if machines is not None:
        rank, port = machines
        command += ["--num_machines", "2", "--machine_rank", str(rank)]
        command += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
    return [*command, str(TRAIN), str(recipe), *args]


def start(command: list, gate: Path | None = None, at_step: int = 4) -> subprocess.Popen:
    env = train_env()
    if gate is not None:
        gate.mkdir(exist_ok=True)
        env.update(TRAINER_TEST_PAUSE_AT_STEP=str(at_step), TRAINER_TEST_GATE_DIR=str(gate))
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_paused(proc: subprocess.Popen, gate: Path, count: int) -> list[int]:
    """The pids of the `count` training processes paused at the gate."""
    deadline = time.time() + 300
    while len(paused := list(gate.glob("paused.*"))) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run never reached the gate"
        time.sleep(0.05)
    return [int(p.suffix[1:]) for p in paused]


def finish(proc: subprocess.Popen, gate: Path | None = None) -> tuple[int, str]:
    if gate is not None:
        (gate / "go").touch()
    _, stderr = proc.communicate(timeout=300)
    return proc.returncode, stderr


def catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught >> (sig - 1) & 1)


def alive(pids: list[int]) -> list[int]:
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.append(pid)
    return living


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dataset) -> Path:
    """The uninterrupted 8 steps on 2 processes, through the launcher."""
    tmp = tmp_path_factory.mktemp("reference")
    code, stderr = finish(start(launch_command(write_recipe(tmp, dataset, "ref"))))
    assert code == 0, stderr[-3000:]
    return tmp / "ref"


def test_one_process_is_the_trainer_itself_and_its_sigterm_gives_75_with_a_checkpoint(tmp_path, dataset):
    recipe = write_recipe(tmp_path, dataset, "one", train="max_steps = 8\nlog_every = 1")
    gate = tmp_path / "gate"
    proc = start(launch_command(recipe, nproc=1), gate)
    (pid,) = wait_paused(proc, gate, 1)
    assert pid == proc.pid  # exec: nothing stands between the signal and the trainer
    os.kill(proc.pid, signal.SIGTERM)
    code, stderr = finish(proc, gate)
    assert code == EXIT_PREEMPTED, stderr[-3000:]
    assert f"stopped by signal {int(signal.SIGTERM)} after step 4" in stderr and "Traceback" not in stderr
    assert [p.name for p in list_checkpoints(tmp_path / "one" / "checkpoints")] == ["step_00000004"]


def test_a_stop_signal_during_the_set_up_stops_after_the_first_step_with_a_checkpoint(tmp_path, dataset):
    """SLURM's early warning or `docker stop` can come while the trainer still imports torch: it is kept."""
    recipe = write_recipe(tmp_path, dataset, "early", train="max_steps = 8\nlog_every = 1")
    proc = start(launch_command(recipe, nproc=1))
    deadline = time.time() + 60
    while not catches(proc.pid, signal.SIGTERM):  # its first lines ran; torch and the model are seconds away
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)
    code, stderr = finish(proc)
    assert code == EXIT_PREEMPTED, stderr[-3000:]
    assert f"stopped by signal {int(signal.SIGTERM)} after step 1" in stderr
    assert [p.name for p in list_checkpoints(tmp_path / "early" / "checkpoints")] == ["step_00000001"]


def test_sigusr1_to_the_launcher_stops_both_processes_with_75_and_resume_is_exact(
    tmp_path, dataset, reference
):
    recipe = write_recipe(tmp_path, dataset, "run")
    gate = tmp_path / "gate"
    proc = start(launch_command(recipe), gate)
    wait_paused(proc, gate, 2)
    os.kill(proc.pid, signal.SIGUSR1)  # the outermost process alone
    code, stderr = finish(proc, gate)
    assert code == EXIT_PREEMPTED, stderr[-3000:]
    assert stderr.count(f"stopped by signal {int(signal.SIGUSR1)} after step 4") == 1
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_00000004"]
    code, stderr = finish(start(launch_command(recipe, "--resume", "auto")))
    assert code == 0, stderr[-3000:]
    assert_bit_equal(reference, tmp_path / "run")


def test_sigterm_to_every_process_with_data_workers_on_checkpoints_and_exits_75(tmp_path, dataset):
    """As SLURM and `kill -- -PGID` signal a job: the launcher, the trainers and their data workers."""
    recipe = write_recipe(tmp_path, dataset, "workers", workers=1)
    gate = tmp_path / "gate"
    proc = start(launch_command(recipe), gate)
    wait_paused(proc, gate, 2)
    everyone = [proc.pid, *descendants(proc.pid)]
    assert len(everyone) >= 5  # the launcher, 2 trainers, their data workers
    for pid in everyone:
        os.kill(pid, signal.SIGTERM)
    code, stderr = finish(proc, gate)
    assert code == EXIT_PREEMPTED, stderr[-3000:]
    assert "killed by signal" not in stderr and "Traceback" not in stderr
    assert [p.name for p in list_checkpoints(tmp_path / "workers" / "checkpoints")] == ["step_00000004"]


def test_a_killed_launcher_leaves_no_process_behind_and_its_trainers_checkpoint(tmp_path, dataset):
    recipe = write_recipe(tmp_path, dataset, "orphans")
    gate = tmp_path / "gate"
    proc = start(launch_command(recipe), gate)
    trainers = wait_paused(proc, gate, 2)
    below = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (gate / "go").touch()
    deadline = time.time() + 120
    while alive(below) and time.time() < deadline:
        time.sleep(0.1)
    assert alive(below) == [], f"left behind: {alive(below)} (trainers {trainers})"
    assert [p.name for p in list_checkpoints(tmp_path / "orphans" / "checkpoints")] == ["step_00000004"]


def test_a_bad_recipe_on_two_processes_is_one_line_and_exit_2(tmp_path, dataset):
    recipe = write_recipe(tmp_path, dataset, "bad", optimizer='type = "SGD"\nlr = -1.0')
    code, stderr = finish(start(launch_command(recipe)))
    assert code == EXIT_BAD_INPUT
    assert len(stderr.strip().splitlines()) == 1 and ": optimizer.lr: " in stderr, stderr


def test_two_machines_on_one_host_train_as_two_processes_on_one(tmp_path, dataset, reference):
    recipe = write_recipe(tmp_path, dataset, "machines")
    with socket.socket() as s:  # a free port for machine 0's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    machines = [start(launch_command(recipe, nproc=2, machines=(rank, port))) for rank in (0, 1)]
    outputs = [proc.communicate(timeout=300) for proc in machines]
    assert [proc.returncode for proc in machines] == [0, 0], [stderr[-2000:] for _, stderr in outputs]
    assert_bit_equal(reference, tmp_path / "machines")
    said = [line for stdout, _ in outputs for line in stdout.splitlines()]  # a job log holds both machines'
    summaries, ends = (sum(line.startswith(word) for line in said) for word in ("run ", "done: "))
    assert summaries == ends == 1
    assert [r["step"] for r in records(tmp_path / "machines") if "loss" in r] == list(range(1, 9))


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--num_processes", "3", "--num_machines", "2", str(TRAIN)], "does not divide among"),
        (["--num_machines", "2", str(TRAIN)], "--main_process_ip: required"),
        (["--num_processes", "2", "--machine_rank", "1", str(TRAIN)], "--machine_rank 1 is not in 0 .. 0"),
        (["missing_script.py"], "SCRIPT: no such file"),
        (["--num_processes", "two", str(TRAIN)], "invalid int value"),
        (["--config_file", "missing.yaml", str(TRAIN)], "--config_file: cannot read 'missing.yaml'"),
    ],
)
def test_bad_launch_arguments_are_one_line_and_exit_2(argv, fragment, capfd):
    try:
        code = launch_main(argv)
    except SystemExit as stop:
        code = stop.code
    stderr = capfd.readouterr().err
    assert code == EXIT_BAD_INPUT and len(stderr.strip().splitlines()) == 1 and fragment in stderr, stderr


def test_an_accelerate_config_file_gives_the_launch_its_values(tmp_path):
    from trainer.launch import plan

    config = tmp_path / "cpu.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_machines: 1\nnum_processes: 2\n"
        'machine_rank: 0\nmixed_precision: "bf16"\nuse_cpu: true\n'
    )
    launch = plan(["--config_file", str(config), str(TRAIN), "r.toml"])
    assert (launch.nproc_per_node, launch.num_machines, launch.args) == (2, 1, ["r.toml"])
    assert launch.env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert plan(["--config_file", str(config), "--num_processes", "4", str(TRAIN)]).nproc_per_node == 4


def test_a_single_accelerate_launch_trainer_stops_with_a_checkpoint_when_its_launcher_is_killed(
    tmp_path, dataset
):
    """What differs under `accelerate launch` (one process): SIGTERM ends the launcher itself (exit -15, not
    75), but the trainer is told (PR_SET_PDEATHSIG), checkpoints and exits instead of training on."""
    recipe = write_recipe(tmp_path, dataset, "accelerate", train="max_steps = 8\nlog_every = 1")
    gate = tmp_path / "gate"
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.is_file():
        pytest.skip("no accelerate command beside this interpreter")
    command = [str(accelerate), "launch", "--num_processes", "1", "--cpu", str(TRAIN), str(recipe)]
    proc = start(command, gate)
    (trainer,) = wait_paused(proc, gate, 1)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    (gate / "go").touch()
    deadline = time.time() + 120
    while alive([trainer]) and time.time() < deadline:
        time.sleep(0.1)
    assert alive([trainer]) == []
    assert [p.name for p in list_checkpoints(tmp_path / "accelerate" / "checkpoints")] == ["step_00000004"]
