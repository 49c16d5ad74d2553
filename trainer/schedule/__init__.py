"""Parameter schedules: MMEngine's LR/momentum schedulers, chained per step, exact to MMEngine's values."""

from trainer.schedule.build import Schedule, build_schedule
from trainer.schedule.schedulers import SCHEDULERS, Arg, ParamScheduler, StepMaps, register_scheduler
from trainer.schedule.units import batches_per_epoch, steps_per_epoch, total_steps
from trainer.schedule.validate import validate_schedule

__all__ = [
    "SCHEDULERS",
    "Arg",
    "ParamScheduler",
    "Schedule",
    "StepMaps",
    "batches_per_epoch",
    "build_schedule",
    "register_scheduler",
    "steps_per_epoch",
    "total_steps",
    "validate_schedule",
]
