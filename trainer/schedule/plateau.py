"""ReduceOnPlateau: MMEngine's decision rule, fed by the metrics the loop reports."""

from __future__ import annotations

from trainer.schedule.schedulers import ReduceOnPlateauParamScheduler

INF = int(1e9)  # MMEngine's INF, the initial "worst" metric


class Plateau:
    """The counters of one ReduceOnPlateau entry (best, bad epochs, cooldown), as MMEngine keeps them."""

    def __init__(self, scheduler: ReduceOnPlateauParamScheduler) -> None:
        self.scheduler = scheduler
        self.reset()

    def reset(self) -> None:
        self.best: float = INF if self.scheduler.rule == "less" else -INF
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def observe(self, value: float, epoch: int) -> bool:
        """Record `value` reported after `epoch` epochs; True where the parameter must be reduced now."""
        s = self.scheduler
        if not s.begin <= epoch < s.end:
            return False
        if s.is_better(value, self.best):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > s.patience:
            self.cooldown_counter = s.cooldown
            self.num_bad_epochs = 0
            return True
        return False

    def reduce(self, values: list[float]) -> list[float]:
        """Per group, the change MMEngine makes: down to max(x * factor, min_value) where that moves > eps."""
        s = self.scheduler
        deltas = []
        for x in values:
            new = max(float(x) * s.factor, s.min_value)
            deltas.append(new - x if x - new > s.eps else 0.0)
        return deltas
