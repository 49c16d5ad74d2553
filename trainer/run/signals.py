"""Preemption: SIGTERM / SIGUSR1 ask training to stop after the current optimizer step, with a checkpoint."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_PR_SET_PDEATHSIG = 1
_early: list[int] = []
"""Stop signals received before training set up its own handlers (see catch_early_stop_signals)."""


def catch_early_stop_signals() -> Callable[[], None]:
    """From the first line of a training script: a SIGTERM/SIGUSR1 that arrives while it imports and builds
    (a SLURM time limit, `docker stop` right after the start) is kept for the loop, which stops after its
    first step with a checkpoint, instead of ending the process by the signal's default action. Returns
    what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    _early.clear()
    previous = {sig: signal.signal(sig, lambda signum, frame: _early.append(signum)) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


class StopRequest:
    """Records a stop signal; `should_stop` makes every process agree on it without a per-step sync."""

    def __init__(self, accelerator, check_every: int) -> None:
        self.accelerator = accelerator
        self.check_every = check_every
        self.signum: int | None = None
        self.data_error_elsewhere = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        if _early:  # received while the run was being set up
            self.signum = _early.pop()
            _early.clear()
        stop_when_launcher_dies()

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum

    def should_stop(self, step: int, local: bool = False) -> bool:
        """One process: the flag itself. Several: a max all-reduce every `check_every` steps, so that all
        processes stop after the same step even when the signal reaches them at different times. `local`
        is another reason to stop that only this process knows of (an unreadable image)."""
        if self.accelerator.num_processes == 1:
            return self.signum is not None or local
        if step % self.check_every:
            return False
        import torch

        flags = torch.tensor(
            [self.signum is not None, local], dtype=torch.int64, device=self.accelerator.device
        )
        signalled, data_errors = self.accelerator.reduce(flags, reduction="sum").tolist()
        if signalled and self.signum is None:
            self.signum = signal.SIGTERM
        self.data_error_elsewhere = data_errors > 0 and not local
        return signalled > 0 or data_errors > 0


def stop_when_launcher_dies() -> None:
    """Under a launcher that does not pass signals on or may be killed outright (torchrun's agent, a single
    process of `accelerate launch`), ask Linux for SIGTERM when it dies: the run then stops after its step
    with a checkpoint instead of training on, orphaned. A run started by hand (nohup, a shell) is left alone.
    scripts/launch.py sets the same for its processes."""
    if not (os.environ.get("TORCHELASTIC_RUN_ID") or _parent_is_accelerate_launch()):
        return
    parent = os.getppid()
    if sigterm_when_parent_dies() and os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def sigterm_when_parent_dies() -> bool:
    """Ask Linux for SIGTERM when this process's parent dies (PR_SET_PDEATHSIG); False where it cannot."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return False
    return True


def _parent_is_accelerate_launch() -> bool:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            words = [os.path.basename(w) for w in f.read().decode(errors="replace").split("\0")]
    except OSError:
        return False
    return any(w.startswith("accelerate") for w in words) and "launch" in words
