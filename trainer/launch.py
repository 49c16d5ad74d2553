"""Start a script's processes on this machine and stand between them and whatever started the launcher: exit
codes, signals and process lifetimes cross the boundary whole (`accelerate launch` turns a 75 into 1 and
leaves a single trainer orphaned on SIGTERM; torchrun ignores SIGUSR1 and gives its workers 30 s).

    python scripts/launch.py [--num_processes N] [--num_machines M --machine_rank R --main_process_ip IP
        --main_process_port P] [--mixed_precision no|fp16|bf16] [--config_file ACCELERATE_YAML] SCRIPT [ARGS]

- One process on one machine: the script replaces the launcher (exec), so its exit code and the signals sent
  to it are its own; nothing stands in between.
- Several: each process gets torch.distributed's environment for env:// rendezvous (RANK, LOCAL_RANK,
  WORLD_SIZE, MASTER_ADDR, ... as torchrun's static rendezvous sets it) and its own session, so a terminal's
  Ctrl-C reaches it once, through the launcher. SIGTERM, SIGUSR1, SIGINT and SIGHUP sent to the launcher go
  on to every process; the launcher exits with the first failing process's exit code (0 when all succeed),
  stopping the others if they do not end by themselves within a grace period; a process whose launcher dies
  (SIGKILL, OOM) gets SIGTERM and checkpoints (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trainer.errors import EXIT_BAD_INPUT, EXIT_PREEMPTED
from trainer.recipe.cli import ArgumentParser
from trainer.run.signals import sigterm_when_parent_dies

FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGHUP)
"""Signals the launcher passes on to every process it started."""
STOP_GRACE_S = 600.0
"""After a process stops by a signal (75) or ends, how long the others may take to checkpoint and end."""
ERROR_GRACE_S = 30.0
"""After a process fails, how long the others may take to end before they are stopped (each stage)."""
POLL_S = 0.2


@dataclass
class Launch:
    """What to start on this machine: `script` with `args`, `nproc_per_node` times, as machine
    `machine_rank` of `num_machines`, meeting at `main_process_ip:main_process_port`."""

    script: str
    args: list[str]
    nproc_per_node: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str = "127.0.0.1"
    main_process_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Variables every process gets on top of the launcher's own (mixed precision, FSDP, ...)."""

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.num_machines


class LaunchError(Exception):
    """Bad launcher input: one line, exit code 2."""


def parser() -> ArgumentParser:
    """`accelerate launch`'s names for the options this launcher takes."""
    p = ArgumentParser(
        prog="launch.py",
        description="Start SCRIPT's processes on this machine; exit codes and signals pass through.",
    )
    p.add_argument("--num_processes", type=int, help="processes in all (default: the GPUs here, or 1)")
    p.add_argument("--num_machines", type=int, help="machines taking part (default 1)")
    p.add_argument("--machine_rank", type=int, help="this machine's rank, 0 .. num_machines - 1")
    p.add_argument("--main_process_ip", help="address of machine 0 (default 127.0.0.1)")
    p.add_argument(
        "--main_process_port", type=int, help="its port (default: a free one on one machine, 29500)"
    )
    p.add_argument(
        "--mixed_precision", choices=["no", "fp16", "bf16"], help="overrides the recipe's precision"
    )
    p.add_argument("--config_file", help="an `accelerate config` file (its values are the defaults)")
    p.add_argument("script", metavar="SCRIPT", help="the script every process runs, e.g. scripts/train.py")
    p.add_argument("args", metavar="ARGS", nargs="...", help="the script's own arguments")
    return p


def plan(argv: Sequence[str]) -> Launch:
    """The launch the command line (and its config file) asks for; LaunchError on a bad value."""
    args = parser().parse_args(list(argv))
    config = _accelerate_config(args.config_file, args.script) if args.config_file else {}

    def pick(name: str, default: object) -> object:
        """The command line's value, else the config file's, else `default`."""
        given = getattr(args, name)
        return given if given is not None else config.get(name, default)

    num_machines = int(pick("num_machines", 1))
    num_processes = int(pick("num_processes", 0)) or max(1, _visible_gpus()) * num_machines
    machine_rank = int(pick("machine_rank", 0))
    if not Path(args.script).is_file():
        raise LaunchError(f"SCRIPT: no such file: {args.script!r} (relative to {os.getcwd()})")
    if num_machines < 1 or num_processes < 1:
        raise LaunchError(f"--num_processes {num_processes} and --num_machines {num_machines} must be >= 1")
    if num_processes % num_machines:
        raise LaunchError(
            f"--num_processes {num_processes} does not divide among --num_machines {num_machines}"
            " (every machine starts as many processes)"
        )
    if not 0 <= machine_rank < num_machines:
        raise LaunchError(f"--machine_rank {machine_rank} is not in 0 .. {num_machines - 1}")
    env = dict(config.get("env", {}))
    precision = pick("mixed_precision", None)
    if precision is not None:
        env["ACCELERATE_MIXED_PRECISION"] = str(precision)
    port = pick("main_process_port", None)
    if num_machines > 1 and pick("main_process_ip", None) is None:
        raise LaunchError("--main_process_ip: required with --num_machines > 1 (the address of machine 0)")
    return Launch(
        script=args.script,
        args=list(args.args),
        nproc_per_node=num_processes // num_machines,
        num_machines=num_machines,
        machine_rank=machine_rank,
        main_process_ip=str(pick("main_process_ip", "127.0.0.1")),
        main_process_port=int(port) if port is not None else None,
        env=env,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, then exec the one process or supervise the several; returns the exit code."""
    try:
        launch = plan(sys.argv[1:] if argv is None else argv)
    except LaunchError as err:
        print(f"launch.py: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if launch.world_size == 1:
        command = [sys.executable, launch.script, *launch.args]
        os.execve(sys.executable, command, {**os.environ, **launch.env})
    return supervise(launch)


def worker_env(launch: Launch, local_rank: int, port: int) -> dict[str, str]:
    """The environment of local process `local_rank`: torch.distributed's env:// variables, as torchrun's
    static rendezvous sets them, and the launch's own."""
    rank = launch.machine_rank * launch.nproc_per_node + local_rank
    env = {**os.environ, **launch.env}
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(launch.world_size),
        LOCAL_WORLD_SIZE=str(launch.nproc_per_node),
        GROUP_RANK=str(launch.machine_rank),
        GROUP_WORLD_SIZE=str(launch.num_machines),
        ROLE_RANK=str(rank),
        ROLE_WORLD_SIZE=str(launch.world_size),
        ROLE_NAME="default",
        MASTER_ADDR=launch.main_process_ip,
        MASTER_PORT=str(port),
    )
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun: the cores shared among the local processes
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // launch.nproc_per_node))
    return env


def supervise(launch: Launch) -> int:
    """Start this machine's processes, pass signals on, and return the first failing one's exit code."""
    port = launch.main_process_port
    if port is None:
        port = _free_port() if launch.num_machines == 1 else 29500
    processes: list[subprocess.Popen] = []
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        for local_rank in range(launch.nproc_per_node):
            processes.append(
                subprocess.Popen(
                    [sys.executable, launch.script, *launch.args],
                    env=worker_env(launch, local_rank, port),
                    start_new_session=True,  # a terminal's Ctrl-C reaches it once, through the launcher
                    preexec_fn=sigterm_when_parent_dies,  # so none trains on alone
                )
            )
        return _wait(processes, received)
    finally:
        for process in processes:  # never leave one behind
            if process.poll() is None:
                process.kill()
                process.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(processes: list[subprocess.Popen], received: list[int]) -> int:
    """Wait for every process; the exit code of the first to fail (or 0). After a failure the others get a
    grace period to end by themselves (the stop signal reached them too), then SIGTERM, then SIGKILL."""
    first: tuple[int, int] | None = None  # (local rank, exit code)
    deadline, stage = None, 0
    while any(p.poll() is None for p in processes):
        for local_rank, process in enumerate(processes):
            code = process.poll()
            if code is not None and code != 0 and first is None:
                first = (local_rank, code)
                grace = STOP_GRACE_S if code == EXIT_PREEMPTED else ERROR_GRACE_S
                deadline = time.monotonic() + grace
        if deadline is not None and time.monotonic() > deadline:
            stage += 1
            sig = signal.SIGTERM if stage == 1 else signal.SIGKILL
            for process in processes:
                if process.poll() is None:
                    os.kill(process.pid, sig)
            deadline = time.monotonic() + ERROR_GRACE_S
        time.sleep(POLL_S)
    if first is None:  # every process ended between two looks
        first = next(((r, p.returncode) for r, p in enumerate(processes) if p.returncode != 0), (0, 0))
    local_rank, code = first
    if code < 0:  # ended by a signal
        name = signal.Signals(-code).name
        print(f"launch.py: process {local_rank} was ended by {name}", file=sys.stderr, flush=True)
        return 128 - code if -code == signal.SIGINT else 1
    return code


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _visible_gpus() -> int:
    """CUDA GPUs this machine shows (CUDA_VISIBLE_DEVICES respected), without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _accelerate_config(path: str, script: str) -> dict:
    """The launch values an `accelerate config` file states, and the environment Accelerate derives from it
    for its processes (mixed precision, FSDP, ...), by Accelerate's own code."""
    import yaml

    try:
        with open(path) as f:
            stated = yaml.safe_load(f) or {}
    except OSError as err:
        raise LaunchError(f"--config_file: cannot read {path!r}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise LaunchError(f"--config_file: {path!r} is not YAML: {' '.join(str(err).split())}") from None
    if not isinstance(stated, dict):
        raise LaunchError(f"--config_file: {path!r} is not an accelerate config (a YAML mapping)")
    try:
        from accelerate.commands.launch import _validate_launch_command, launch_command_parser
        from accelerate.utils.launch import prepare_multi_gpu_env

        args = launch_command_parser().parse_args(["--config_file", path, script])
        args, _, _ = _validate_launch_command(args)
        env = prepare_multi_gpu_env(args)
    except Exception as err:  # noqa: BLE001 - Accelerate raises many types for a bad config
        raise LaunchError(
            f"--config_file: Accelerate cannot use {path!r}: {type(err).__name__}: {err}"
        ) from None
    keys = (
        "num_processes",
        "num_machines",
        "machine_rank",
        "main_process_ip",
        "main_process_port",
        "mixed_precision",
    )
    config: dict = {k: stated[k] for k in keys if stated.get(k) is not None}
    config["env"] = {
        k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_")) and os.environ.get(k) != v
    }
    return config
