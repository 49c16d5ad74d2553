"""Experiment trackers through Accelerate (`train.log_with`, checked with the recipe by
trainer.recipe.trackers): init arguments from `[train.trackers]`, the recipe's name as the project, each run
named by its folder, TensorBoard's files in the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate.tracking import TensorBoardTracker, on_main_process

from trainer.errors import RecipeError

RUN_NAME_ARG = {"wandb": "name", "mlflow": "run_name", "aim": "run_name"}
"""The init argument that names a run, given the run folder's name unless set."""


class RunFolderTensorBoard(TensorBoardTracker):
    """Accelerate's TensorBoard tracker writing into the run folder itself, the recipe as hparams in the
    same folder (Accelerate's own adds a timestamped one), so that `tensorboard --logdir runs` lists each
    run by its folder's name. After a resume, TensorBoard drops what the run logged past its checkpoint."""

    def __init__(self, output_dir: str | Path, resumed_at: int = 0, **kwargs: Any) -> None:
        if resumed_at:
            kwargs.setdefault("purge_step", resumed_at + 1)
        super().__init__(run_name="", logging_dir=str(output_dir), **kwargs)

    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        self.writer.add_hparams(values, metric_dict={}, run_name=".")
        self.writer.flush()


def start_trackers(accelerator, cfg: dict[str, Any], project: str, output_dir: Path, step: int) -> bool:
    """Start the recipe's trackers (main process) with the recipe as their config; False when there are
    none. The project is `train.trackers.project` or the recipe's name; each run is named by its folder."""
    train = cfg["train"]
    if not train["log_with"]:
        return False
    trackers = train.get("trackers") or {}
    init = {name: dict(args) for name, args in trackers.items() if name != "project" and args is not None}
    accelerator.log_with = []
    for name in train["log_with"]:
        args = init.setdefault(name, {})
        if name in RUN_NAME_ARG:
            args.setdefault(RUN_NAME_ARG[name], output_dir.name)
        if name == "tensorboard":
            tracker: Any = RunFolderTensorBoard(output_dir, step, **args)
            accelerator.log_with.append(tracker)
        else:
            accelerator.log_with.append(name)
    project = trackers.get("project") or project
    try:
        accelerator.init_trackers(project, config=tracker_config(cfg), init_kwargs=init)
    except Exception as err:  # noqa: BLE001 - each tracker's own errors (no server, no login, bad argument)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        names = ", ".join(train["log_with"])
        raise RecipeError("train.log_with", f"a tracker ({names}) could not start: {first[:300]}") from None
    return True


def tracker_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The recipe flattened for trackers' hyper-parameter tables (lists become strings)."""
    from trainer.outputs.run_info import flat

    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in flat(cfg).items()}
