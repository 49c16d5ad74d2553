"""`[[schedule]]`: one MMEngine param_scheduler per entry."""

from __future__ import annotations

from trainer.sections import OpenSection


class ScheduleEntry(OpenSection):
    """One `[[schedule]]` entry (open): an MMEngine param_scheduler, `type` plus its arguments."""

    type: str
    """Scheduler type, e.g. "LinearLR", "CosineAnnealingLR", "MultiStepLR", "LinearMomentum"."""
