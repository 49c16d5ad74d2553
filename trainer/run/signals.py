"""Preemption: SIGTERM / SIGUSR1 ask training to stop after the current optimizer step, with a checkpoint."""

from __future__ import annotations

import signal
import threading

import torch

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


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
        flags = torch.tensor(
            [self.signum is not None, local], dtype=torch.int64, device=self.accelerator.device
        )
        signalled, data_errors = self.accelerator.reduce(flags, reduction="sum").tolist()
        if signalled and self.signum is None:
            self.signum = signal.SIGTERM
        self.data_error_elsewhere = data_errors > 0 and not local
        return signalled > 0 or data_errors > 0
