"""Non-finite losses and gradients: found on the device without a host sync, acted on at sync points."""

from __future__ import annotations

import torch


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient norm in optimizer step `step` (1-based)."""

    def __init__(self, step: int, detail: str = "") -> None:
        super().__init__(
            f"non-finite loss or gradient norm in step {step}" + (f" ({detail})" if detail else "")
        )
        self.step = step


class NonFiniteGuard:
    """Remembers, on the device, the first optimizer step whose loss or gradient norm was NaN or inf."""

    def __init__(self, device: torch.device, start_step: int, enabled: bool = True) -> None:
        self.enabled = enabled  # off in "skip" mode, where the loop itself skips non-finite updates
        self.window_bad = torch.zeros((), dtype=torch.bool, device=device)
        self.step = torch.full((), start_step, dtype=torch.int64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def observe(self, value: torch.Tensor) -> None:
        """Fold a loss (or norm) into the current step's flag: a device op, no sync."""
        if not self.enabled:
            return
        self.window_bad |= ~torch.isfinite(value.detach()).all()

    def end_step(self) -> None:
        """Close one optimizer step: remember it if it was the first bad one."""
        if not self.enabled:
            return
        self.step += 1
        self.first_bad = torch.where((self.first_bad < 0) & self.window_bad, self.step, self.first_bad)
        self.window_bad.zero_()

    def check(self, accelerator) -> None:
        """Raise NonFiniteError if any process saw a non-finite value (a host sync: call at sync points)."""
        if not self.enabled:
            return
        firsts = (
            accelerator.gather(self.first_bad[None])
            if accelerator.num_processes > 1
            else self.first_bad[None]
        )
        bad = [s for s in firsts.tolist() if s >= 0]
        if bad:
            raise NonFiniteError(min(bad))


class SkipCounter:
    """Updates skipped (non-finite in "skip" mode, fp16 overflow): they are not steps, so a run that only
    skips would never end; more than `limit` in a row stop it with NonFiniteError."""

    def __init__(self, limit: int, total: int = 0) -> None:
        self.limit = limit
        self.total = total
        self.in_a_row = 0

    def record(self, updated: bool, step: int) -> None:
        """Count one optimizer window that did (`updated`) or did not update the weights."""
        if updated:
            self.in_a_row = 0
            return
        self.total += 1
        self.in_a_row += 1
        if self.in_a_row > self.limit:
            raise NonFiniteError(step + 1, f"{self.in_a_row} updates in a row were skipped")


class BufferSnapshot:
    """The model's buffers (BatchNorm's running statistics and batch counts) as an optimizer window found
    them, put back when its update is skipped: "skip" keeps nothing of a non-finite step, forward passes
    included. Two foreach copies per window, only in "skip" mode."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.buffers = [b for b in model.buffers() if b.numel()]
        self.kept = [b.detach().clone() for b in self.buffers]

    def take(self) -> None:
        if self.buffers:
            torch._foreach_copy_(self.kept, self.buffers)

    def put_back(self) -> None:
        if self.buffers:
            with torch.no_grad():
                torch._foreach_copy_(self.buffers, self.kept)
