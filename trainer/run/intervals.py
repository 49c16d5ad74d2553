"""When the loop logs, evaluates and checkpoints: MMEngine's interval rules in epochs or steps."""

from __future__ import annotations

from typing import Any

from trainer.run.checkpoint import TrainerState
from trainer.schedule.units import TrainingLength


class Intervals:
    """`train.log_every` counts steps; `eval.interval` and `checkpoint.interval` count epochs when training
    is epoch-based (default 1) and steps under `train.max_steps` (default 1000). The last step always
    evaluates and checkpoints."""

    def __init__(self, cfg: dict[str, Any], length: TrainingLength, can_eval: bool) -> None:
        default = 1 if length.by_epoch else 1000
        self.by_epoch = length.by_epoch
        self.total_steps = length.total_steps
        self.log_every = cfg["train"]["log_every"]
        self.eval_every = cfg["eval"].get("interval", default)
        self.checkpoint_every = cfg["checkpoint"].get("interval", default)
        self.eval_on = can_eval and cfg["eval"]["enabled"]

    def done(self, state: TrainerState) -> bool:
        return state.step >= self.total_steps

    def log_due(self, state: TrainerState, updated: bool) -> bool:
        return updated and (state.step % self.log_every == 0 or self.done(state))

    def eval_due(self, state: TrainerState, updated: bool, end_of_epoch: bool) -> bool:
        return self.eval_on and self._due(self.eval_every, state, updated, end_of_epoch)

    def checkpoint_due(self, state: TrainerState, updated: bool, end_of_epoch: bool) -> bool:
        return self._due(self.checkpoint_every, state, updated, end_of_epoch)

    def _due(self, every: int, state: TrainerState, updated: bool, end_of_epoch: bool) -> bool:
        """At the end of a unit (an epoch or an update) whose count is a multiple of `every`; after the last
        step always, wherever in an epoch it falls."""
        if updated and self.done(state):
            return True
        count, unit_end = (state.epoch, end_of_epoch) if self.by_epoch else (state.step, updated)
        return unit_end and count % every == 0
