"""Experiment tracking through Accelerate's trackers: TensorBoard (installed with trainer) writes real event
files into the run folder, named by it, with the recipe as hparams and no step twice after a resume; a
tracker that is not installed is one line before anything is built; `[train.trackers]` passes the project
and each tracker's init arguments (MLflow's local file store where mlflow is installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs import call_main, make_dataset, recipe_text, records, run, train_env, train_in_process

TB = 'max_steps = 6\nlog_every = 1\nlog_with = ["tensorboard"]'


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard reads from the event files directly in `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_writes_every_record_into_the_run_folder_itself(tmp_path, dataset, capfd):
    out = train_in_process(tmp_path, dataset, "tb", capfd=capfd, train=TB, checkpoint=None)
    files = list(out.rglob("events.out.tfevents.*"))
    assert files and {f.parent for f in files} == {out}  # no runs/x/x/ or timestamped sub-folder
    logged = scalars(out)
    steps = [r for r in records(out) if "lr" in r]
    assert [s for s, _ in logged["loss"]] == [r["step"] for r in steps] == list(range(1, 7))
    assert [v for _, v in logged["loss"]] == pytest.approx([r["loss"] for r in steps], rel=1e-6)
    assert [v for _, v in logged["lr"]] == pytest.approx([r["lr"] for r in steps], rel=1e-6)
    assert [s for s, _ in logged["eval_top1"]] == [6]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    hparams = EventAccumulator(str(out))
    hparams.Reload()
    assert "_hparams_/session_start_info" in hparams.summary_metadata  # the recipe, for the HParams tab


def test_a_run_resumed_from_an_earlier_checkpoint_leaves_no_step_twice_in_tensorboard(
    tmp_path, dataset, capfd
):
    train = TB.replace("max_steps = 6", "max_steps = 5")
    out = train_in_process(tmp_path, dataset, "run", capfd=capfd, train=train, checkpoint="interval = 2")
    recipe = tmp_path / "run.toml"
    code, _, err = call_main("train.py", [recipe, "--resume", out / "checkpoints" / "step_00000002"], capfd)
    assert code == 0, err[-2000:]  # steps 3-5 trained and logged again
    loss = scalars(out)["loss"]
    assert [s for s, _ in loss] == [1, 2, 3, 4, 5]
    assert [v for _, v in loss] == pytest.approx([r["loss"] for r in records(out) if "lr" in r], rel=1e-6)


def test_a_tracker_that_is_not_installed_is_one_line_before_anything_is_built(tmp_path, dataset, capfd):
    from accelerate.utils import is_comet_ml_available

    if is_comet_ml_available():
        pytest.skip("comet_ml is installed here")
    recipe = tmp_path / "c.toml"
    train = 'max_steps = 2\nlog_with = ["tensorboard", "comet_ml"]'
    recipe.write_text(recipe_text(dataset, tmp_path / "c", train=train))
    code, _, err = call_main("train.py", [recipe], capfd)
    assert code == 2 and not (tmp_path / "c").exists()
    assert err.strip().splitlines() == [
        f"recipe error: {recipe}: train.log_with[1]: comet_ml is not installed: pip install comet-ml,"
        " or leave it out of train.log_with"
    ]


def test_init_arguments_for_a_tracker_not_in_log_with_are_one_line(tmp_path, dataset, capfd):
    recipe = tmp_path / "w.toml"
    train = 'max_steps = 2\nlog_with = ["tensorboard"]\n[train.trackers]\nwandb = { entity = "me" }'
    recipe.write_text(recipe_text(dataset, tmp_path / "w", train=train))
    code, _, err = call_main("train.py", [recipe], capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "train.trackers.wandb: init arguments for wandb, which train.log_with does not name" in err


def test_tensorboard_takes_its_init_arguments_from_train_trackers(tmp_path, dataset, capfd):
    train = f'{TB}\n[train.trackers]\ntensorboard = {{ filename_suffix = ".digits" }}'
    out = train_in_process(tmp_path, dataset, "s", capfd=capfd, train=train, checkpoint=None)
    logged = [f for f in out.glob("events.out.tfevents.*") if f.name.endswith(".digits")]
    assert logged and scalars(out)["loss"]


def test_mlflow_logs_to_a_local_file_store_under_the_recipes_name(tmp_path, dataset, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 keeps the file store behind this
    store = (tmp_path / "mlruns").as_uri()
    recipe = tmp_path / "digits_probe.toml"
    train = (
        'max_steps = 4\nlog_every = 1\nlog_with = ["mlflow"]\n[train.trackers.mlflow]\ntags = { team = "a" }'
    )
    recipe.write_text(recipe_text(dataset, tmp_path / "run1", train=train, checkpoint=None))
    run(recipe, env=train_env(MLFLOW_TRACKING_URI=store, MLFLOW_ALLOW_FILE_STORE="true"))
    mlflow.set_tracking_uri(store)
    experiment = mlflow.get_experiment_by_name("digits_probe")  # the project: the recipe's name
    assert experiment is not None
    (found,) = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert found.info.run_name == "run1" and found.data.tags["team"] == "a"
    history = mlflow.MlflowClient(store).get_metric_history(found.info.run_id, "loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
