"""The run directory as a timm model folder: config.json in timm's format and a model card README.md.

`timm.create_model("local-dir:RUN_DIR", pretrained=True)` loads a run (and `hf-hub:user/repo` once
scripts/push_to_hub.py uploaded it). config.json is written by timm's own `save_config_for_hf` with the eval
pipeline the run used as its data config, so `timm.data.resolve_data_config(model=...)` gives that pipeline
back, and the label names of the train split when its labels are a `datasets.ClassLabel`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.errors import RecipeError
from trainer.files import WriteError, dumps_strict, write_text

CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
RECIPE_FILE = "recipe.toml"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_FILE = "model.safetensors"
EMA_WEIGHTS_FILE = "model_ema.safetensors"
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
"""timm's data config: what `resolve_data_config` returns and `create_transform` takes."""
CARD_MARK = "<!-- model card written by trainer (trainer/export.py) -->"
"""The card's marker: a README.md without it (output_dir = "." in a project) is never overwritten."""
PROJECT = Path(__file__).resolve().parents[2]
"""The checkout that holds trainer/ and scripts/ (what the card's commands are relative to)."""
SOURCE_ONLY_KEYS = ("tag", "license", "origin_url", "notes")
"""pretrained_cfg entries timm copies from the architecture's registry weights; they do not describe a run."""


def export_run_dir(accelerator: Any, model: torch.nn.Module, output_dir: str | Path) -> None:
    """At the end of training, on the main process, after the weights: config.json and README.md."""
    if not accelerator.is_main_process:
        return
    model = accelerator.unwrap_model(model)
    model = getattr(model, "_orig_mod", model)  # torch.compile
    try:
        write_model_folder(model, output_dir, processes=accelerator.num_processes, command=training_command())
    except WriteError:  # the disk said no: one line, exit 1, as any write of the run
        raise
    except Exception as err:  # noqa: BLE001 - the weights are written: say what is missing and go on
        detail = err.message if isinstance(err, RecipeError) else f"{type(err).__name__}: {err}"
        print(
            f"export warning: no {CONFIG_FILE} / {CARD_FILE} in the run directory: {detail}", file=sys.stderr
        )


def read_recipe(run_dir: str | Path) -> dict[str, Any]:
    """The resolved recipe a run directory holds (recipe.toml)."""
    path = Path(run_dir) / RECIPE_FILE
    if not path.is_file():
        raise RecipeError("run_dir", f"not a run directory: it has no {RECIPE_FILE}", file=str(run_dir))
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise RecipeError("run_dir", f"cannot read {RECIPE_FILE}: {err}", file=str(run_dir)) from None


def model_from_recipe(cfg: dict[str, Any]) -> torch.nn.Module:
    """The run's architecture on the meta device (no weights): enough for config.json and the card."""
    from trainer.model import build_model

    model_cfg = {k: v for k, v in cfg["model"].items() if k not in ("weights", "pretrained")}
    return build_model(model_cfg, device="meta")


def write_model_folder(
    model: torch.nn.Module,
    run_dir: str | Path,
    processes: int | None = None,
    command: str | None = None,
) -> None:
    """Write config.json and README.md into `run_dir` for `model` (the run's architecture, weights or not),
    from its recipe.toml, metrics.jsonl and dataset."""
    run_dir = Path(run_dir)
    cfg = read_recipe(run_dir)
    data = describe_data(cfg["data"])
    write_config(model, run_dir / CONFIG_FILE, cfg, data.label_names)
    card = model_card(run_dir, cfg, model, data, processes=processes, command=command)
    existing = run_dir / CARD_FILE
    if existing.is_file() and CARD_MARK not in existing.read_text(errors="replace"):
        raise RecipeError("output_dir", f"{str(existing)!r} is not a model card of ours: left as it is")
    write_text(existing, card)


def data_config(model: torch.nn.Module, data_cfg: dict[str, Any]) -> dict[str, Any]:
    """The eval pipeline the run used, as timm's data config (trainer.data.transforms' resolution with the
    recipe's data.eval_image_size (or image_size) and data.augment overrides)."""
    from trainer.data.transforms import resolve_input_config

    size = data_cfg.get("eval_image_size", data_cfg.get("image_size"))
    resolved = resolve_input_config(model, size, data_cfg.get("augment"))
    return {k: resolved[k] for k in DATA_CONFIG_KEYS if k in resolved}


def write_config(
    model: torch.nn.Module, path: str | Path, cfg: dict[str, Any], label_names: list[str] | None = None
) -> None:
    """config.json by timm's `save_config_for_hf`: architecture, num_classes, model_args, the pretrained_cfg
    with the run's eval pipeline, and `label_names` when they name every class."""
    from timm.models._hub import save_config_for_hf

    model_config: dict[str, Any] = {}
    if label_names and len(label_names) == getattr(model, "num_classes", None):
        model_config["label_names"] = list(label_names)
    try:
        save_config_for_hf(
            model, str(path), model_config=model_config, data_config=data_config(model, cfg["data"])
        )
        # the registry's tag and license describe timm's own weights for the architecture, not these
        config = json.loads(Path(path).read_text())
        for key in SOURCE_ONLY_KEYS:
            config["pretrained_cfg"].pop(key, None)
        write_text(path, dumps_strict(config, indent=2))
    except OSError as err:
        raise WriteError(path, err) from None
    except (TypeError, ValueError) as err:  # a model argument timm cannot serialize
        raise RecipeError("model", f"timm cannot write {CONFIG_FILE} for this model: {err}") from None


@dataclass
class DataSummary:
    """What the card and config.json say about the data: label names, split sizes and the source's format
    (`hub_name` for a Hub dataset), where readable."""

    label_names: list[str] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    hub_name: str | None = None
    format: str | None = None
    """The source's `data.format` ("hub", "parquet", "imagefolder", ...; "parquet shards" or "webdataset
    shards" when streamed); None where the data could not be read."""


def describe_data(data_cfg: dict[str, Any]) -> DataSummary:
    """Label names of the train split (a ClassLabel's names), split sizes, the source's format and the hub
    name of the dataset; best effort: data that cannot be read now gives an empty summary."""
    from trainer.data import data_config, open_source, quiet_progress_bars

    summary = DataSummary()
    try:
        cfg = data_config(data_cfg)
        with quiet_progress_bars():
            source = open_source(cfg)
            shards = getattr(source, "fmt", None)  # a streamed source: parquet or webdataset shards
            summary.format = f"{shards} shards" if shards else source.format
            if source.format == "hub":
                summary.hub_name = cfg.path
            names = source.split_names()
            splits = {
                role: source.split(name)
                for role, name in (("train", cfg.train_split), ("eval", cfg.eval_split))
                if name in names
            }
    except Exception:  # noqa: BLE001 - the card is written without what cannot be read
        return DataSummary()
    summary.sizes = {role: len(split) for role, split in splits.items()}
    if "train" in splits:
        summary.label_names = splits["train"].label_names(cfg.label_column)
    return summary


def training_command() -> str | None:
    """The command line that is training now (scripts/train.py's), with its launcher, or None."""
    argv = list(sys.argv)
    if not argv or not argv[0].endswith("train.py"):
        return None
    script = Path(argv[0]).resolve()
    script = script.relative_to(PROJECT) if script.is_relative_to(PROJECT) else Path(argv[0])
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"python scripts/launch.py --num_processes {processes}" if processes > 1 else "python"
    return " ".join([launcher, *(shlex.quote(a) for a in [str(script), *argv[1:]])])


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl (an unreadable last line, from a killed run, is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def final_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The last eval record's metrics and the last training record's step, epoch and loss."""
    final: dict[str, Any] = {}
    for record in records:
        if "eval_top1" in record:
            final["eval"] = record
        if "loss" in record:
            final["train"] = record
    return final


@dataclass(frozen=True)
class BaseWeights:
    """Where a run's initial weights came from, as its card says it."""

    text: str
    """A phrase for the card's body (naming no local path)."""
    hub_id: str | None = None
    """The Hub model they are (the card's `base_model`): timm's `timm/<name>.<tag>`, or a hf-hub: repo."""
    license: str | None = None
    """Their license, where timm's registry of pretrained weights says it."""


def base_weights(model_cfg: dict[str, Any]) -> BaseWeights:
    """The initial weights `[model]` names, from the recipe alone (nothing is read or downloaded): a local
    `model.weights` file or `local-dir:` folder (no Hub id), a `hf-hub:user/repo` folder (`user/repo`), timm's
    pretrained weights for a registry name (their Hub id and license in timm's registry), or none."""
    from trainer.model.create import model_source

    name, pretrained = model_cfg["name"], model_cfg.get("pretrained")
    if model_cfg.get("weights") is not None:
        return BaseWeights(f"a local weights file (`{Path(model_cfg['weights']).name}`)")
    try:
        source, ident = model_source(name)
    except RecipeError:
        source, ident = None, name
    if source == "hf-hub" and pretrained is not False:
        repo = ident.split("@")[0]  # a pinned revision is no part of the Hub id
        return BaseWeights(f"the Hub model [`{repo}`](https://huggingface.co/{repo})", hub_id=repo)
    if source == "local-dir" and pretrained is not False:
        return BaseWeights(f"a local timm model folder (`{Path(ident).name}`)")
    if source is None and pretrained:
        from timm.models import get_pretrained_cfg

        try:
            registry = get_pretrained_cfg(name)
        except (RuntimeError, ValueError):
            registry = None
        hub_id = getattr(registry, "hf_hub_id", None) or None
        where = f" ([`{hub_id}`](https://huggingface.co/{hub_id}))" if hub_id else ""
        return BaseWeights(
            f"timm's pretrained `{name}`{where}", hub_id=hub_id, license=getattr(registry, "license", None)
        )
    return BaseWeights("random initialization")


RUN_PLACEHOLDER = "PATH/TO/RUN"
"""How the card names the run folder: a card travels (copied, uploaded), so it names no local path."""
DATA_PLACEHOLDER = "PATH/TO/DATA"
"""How the card's command and recipe name local data (`data.path`)."""
LOCAL_DATA = {
    "disk": ("a local `save_to_disk` dataset", "arrow"),
    "imagefolder": ("a local image folder", "imagefolder"),
    "annotations": ("a local image folder with annotation files", "imagefolder"),
    "parquet": ("local parquet files", "parquet"),
    "parquet shards": ("local parquet shards", "parquet"),
    "webdataset shards": ("local WebDataset shards", "webdataset"),
}
"""Local data by source format: the card's words for it, and its model-index dataset type (the `datasets`
builder that reads the format)."""
METRICS = (("eval_top1", "accuracy", "Top 1 Accuracy"), ("eval_top5", "top_5_accuracy", "Top 5 Accuracy"))
"""metrics.jsonl's final eval metrics in the card's model-index: (record key, metric type, metric name)."""
LICENSES_URL = "https://huggingface.co/docs/hub/repositories-licenses"
_LOCAL_PATH = re.compile(r"(?<![\w.~/-])~?/(?!/)[^\s\"',\]]*")
"""An absolute (or home) path inside a command-line argument or recipe value; not a URL's slashes."""


def usage(location: str, ema: bool = False) -> str:
    """The card's usage section for a model at `location` (`local-dir:PATH/TO/RUN` or `hf-hub:user/repo`):
    loading with timm, its eval pipeline, and the weights files."""
    hub = location.startswith("hf-hub:")
    where = (
        f"[`{location[7:]}`](https://huggingface.co/{location[7:]}) on the Hub"
        if hub
        else f"`{RUN_PLACEHOLDER}`, the folder that holds this card"
    )
    lines = [
        "```python",
        "import timm",
        "",
        f'model = timm.create_model("{location}", pretrained=True).eval()',
        "config = timm.data.resolve_data_config(model=model)  # the eval pipeline of the run",
        "transform = timm.data.create_transform(**config)",
        "top5 = model(transform(image).unsqueeze(0)).softmax(-1).topk(5)",
        "```",
        "",
        f"The model loads from {where}."
        f" Weights: `{WEIGHTS_FILE}`, keys as in the timm model's `state_dict()`.",
    ]
    if ema:
        ema_file = (
            f'huggingface_hub.hf_hub_download("{location[7:]}", "{EMA_WEIGHTS_FILE}")'
            if hub
            else f'"{RUN_PLACEHOLDER}/{EMA_WEIGHTS_FILE}"'
        )
        lines[-1] += (
            f" The EMA weights, `{EMA_WEIGHTS_FILE}`, load into the same model:"
            f" `model.load_state_dict(safetensors.torch.load_file({ema_file}))`."
        )
    return "\n".join(lines) + "\n"


def license_line(license: str | None, origin: str) -> str:
    """The card's license line: `license` and where it came from, or how to set one."""
    if license:
        return f"- **License:** `{license}` ({origin})"
    return (
        "- **License:** not set: the terms of these weights are yours to state (`scripts/push_to_hub.py"
        f" --license ID` sets one of the Hub's identifiers, {LICENSES_URL})"
    )


def data_phrase(data_cfg: dict[str, Any], data: DataSummary) -> str:
    """The card's words for the run's data: a Hub dataset by name and link, local data by its kind alone."""
    if data.hub_name:
        config = f" (configuration `{data_cfg['name']}`)" if data_cfg.get("name") else ""
        return f"the Hub dataset [`{data.hub_name}`](https://huggingface.co/datasets/{data.hub_name}){config}"
    if data.format in LOCAL_DATA:
        return LOCAL_DATA[data.format][0]
    return "local data (not readable when this card was written)"


def eval_results(record: dict[str, Any] | None, data_cfg: dict[str, Any], data: DataSummary) -> list[Any]:
    """The final eval's top-1 and top-5 (in percent, as in metrics.jsonl) as the Hub's `EvalResult`s on the
    eval split (or the held-out part of train)."""
    from huggingface_hub import EvalResult

    if not record:
        return []
    if data.hub_name:
        dataset = {"dataset_type": data.hub_name, "dataset_name": data.hub_name}
        if data_cfg.get("name"):
            dataset["dataset_config"] = data_cfg["name"]
    else:
        kind, builder = LOCAL_DATA.get(data.format or "", ("local data", "local"))
        dataset = {"dataset_type": builder, "dataset_name": kind}
    split = data_cfg.get("eval_split", "validation")
    if "eval" not in data.sizes and data_cfg.get("eval_fraction"):
        split = f"{data_cfg.get('train_split', 'train')} (held out: {data_cfg['eval_fraction']:g})"
    results = []
    for key, metric_type, metric_name in METRICS:
        value = record.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Image Classification",
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=value,
                    **dataset,
                )
            )
    return results


def portable_value(value: str) -> str:
    """An absolute local path as the card shows it: relative to the working directory or to this checkout
    (`recipes/quickstart.toml`) where it lies below one, else `PATH/TO/<its name>`."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        return value
    for root in (Path.cwd(), PROJECT):
        if path.is_relative_to(root) and path != root:
            return str(path.relative_to(root))
    return f"PATH/TO/{path.name}"


def portable_paths(text: str) -> str:
    """`text` with each absolute (or home) path in it made portable (`portable_value`)."""
    return _LOCAL_PATH.sub(lambda match: portable_value(match.group(0)), text)


def local_keys(cfg: dict[str, Any], data: DataSummary) -> dict[str, str]:
    """The recipe keys that hold this machine's paths and what the card shows instead: the run folder, local
    data, a weights file, a local-dir: model folder."""
    keys = {"output_dir": RUN_PLACEHOLDER}
    if not data.hub_name:
        keys["data.path"] = DATA_PLACEHOLDER
    model_cfg = cfg.get("model", {})
    if model_cfg.get("weights"):
        keys["model.weights"] = f"PATH/TO/{Path(model_cfg['weights']).name}"
    if str(model_cfg.get("name", "")).startswith("local-dir:"):
        keys["model.name"] = f"local-dir:PATH/TO/{Path(model_cfg['name'][10:]).name}"
    return keys


def portable_command(command: str, keys: dict[str, str]) -> str:
    """The training command as the card shows it: `--set` values of the `keys` replaced, other local paths
    made portable."""
    shown = []
    for token in shlex.split(command):
        key, equals, _ = token.partition("=")
        if equals and key.strip() in keys:
            shown.append(f"{key}={keys[key.strip()]}")
        else:
            shown.append(portable_paths(token))
    return " ".join(shlex.quote(token) for token in shown)


def portable_recipe(cfg: dict[str, Any], keys: dict[str, str]) -> str:
    """The resolved recipe as the card shows it (TOML): the `keys` replaced, other local paths made
    portable."""
    import copy

    import tomli_w

    shown = copy.deepcopy(cfg)
    for dotted, value in keys.items():
        table, _, key = dotted.rpartition(".")
        where = shown.get(table) if table else shown
        if isinstance(where, dict) and key in where:
            where[key] = value

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return portable_paths(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return tomli_w.dumps(walk(shown)).rstrip()


def model_card(
    run_dir: Path,
    cfg: dict[str, Any],
    model: torch.nn.Module,
    data: DataSummary,
    processes: int | None = None,
    command: str | None = None,
) -> str:
    """README.md as huggingface_hub's `ModelCard`: metadata (library, task, base model, Hub dataset, the
    final eval as model-index, the initial weights' license where known) and a body (what was trained on
    what, final metrics, usage, the command, the resolved recipe) that names no local path."""
    from huggingface_hub import ModelCard, ModelCardData

    arch = model.pretrained_cfg.get("architecture") or type(model).__name__
    num_classes = getattr(model, "num_classes", None)
    params = sum(p.numel() for p in model.parameters())
    final = final_metrics(read_metrics(run_dir))
    data_cfg, train_cfg = cfg["data"], cfg["train"]
    base = base_weights(cfg["model"])
    ema = bool(cfg.get("ema", {}).get("enabled"))
    metadata = ModelCardData(
        license=base.license,
        library_name="timm",
        pipeline_tag="image-classification",
        tags=["image-classification", "timm"],
        base_model=base.hub_id,
        datasets=[data.hub_name] if data.hub_name else None,
        model_name=run_dir.name,
        eval_results=eval_results(final.get("eval"), data_cfg, data) or None,
    )
    where = data_phrase(data_cfg, data)
    counts = " / ".join(f"{n:,} {data_cfg.get(f'{role}_split', role)}" for role, n in data.sizes.items())
    lines = [CARD_MARK, f"# {run_dir.name}", ""]
    lines.append(
        f"A timm `{arch}` image classifier ({params / 1e6:.2f} M parameters, {num_classes} classes) trained"
        f" by `trainer` from the recipe below on {where}" + (f" ({counts} images)." if counts else ".")
    )
    lines += ["", "## Model details", ""]
    lines.append(f"- **Architecture:** `{arch}` (timm)")
    names = data.label_names if data.label_names and len(data.label_names) == num_classes else None
    shown = f": {', '.join(names[:20])}{', ...' if names and len(names) > 20 else ''}" if names else ""
    lines.append(f"- **Classes:** {num_classes}{shown}")
    pipeline = data_config(model, data_cfg)
    size = "x".join(str(s) for s in pipeline["input_size"])
    lines.append(
        f"- **Input:** {size}, {pipeline['interpolation']} resize, crop_pct {pipeline['crop_pct']:g}"
        f" ({pipeline['crop_mode']}), mean {_floats(pipeline['mean'])}, std {_floats(pipeline['std'])}"
    )
    sizes = ", ".join(
        f"{role} split `{data_cfg.get(f'{role}_split', role)}` ({n:,} images)"
        for role, n in data.sizes.items()
    )
    lines.append(f"- **Data:** {where}" + (f": {sizes}" if sizes else ""))
    length = f"{train_cfg['epochs']} epochs" if "epochs" in train_cfg else f"{train_cfg['max_steps']} steps"
    batch = f"batch {data_cfg['batch_size']} per process x accumulate {train_cfg.get('accumulate', 1)}"
    if processes:
        batch += f" x {processes} process{'es' if processes > 1 else ''}"
    lines.append(
        f"- **Training:** {length}, {batch}, {cfg['optimizer']['type']} lr {cfg['optimizer'].get('lr')}"
    )
    lines.append(f"- **Initial weights:** {base.text}")
    lines.append(license_line(base.license, "the initial weights' license, from timm's registry"))
    lines += ["", "## Results", ""]
    lines += _results(final, ema)
    lines += ["", "## Usage", "", usage(f"local-dir:{RUN_PLACEHOLDER}", ema)]
    lines += [
        "```bash",
        f"python scripts/evaluate.py {RUN_PLACEHOLDER}            # top-1, top-5, loss on the eval split",
        f"python scripts/plot_metrics.py {RUN_PLACEHOLDER} --out curves.png",
        "```",
        "",
        "## Command",
        "",
    ]
    keys = local_keys(cfg, data)
    if command:
        lines += ["Trained with", "", "```bash", portable_command(command, keys), "```", ""]
    elsewhere = "" if data.hub_name else " (`--set data.path=...` where the data is)"
    lines.append(
        f"`{RECIPE_FILE}` beside this card is the resolved recipe (bases and `--set` applied); it trains"
        f" again with `python scripts/launch.py scripts/train.py {RUN_PLACEHOLDER}/{RECIPE_FILE} --set"
        f" output_dir=OTHER_DIR`{elsewhere}. Below, its local paths read `PATH/TO/...`."
    )
    lines += ["", "## Recipe", "", "```toml", portable_recipe(cfg, keys), "```", ""]
    return str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n" + "\n".join(lines)))


def _results(final: dict[str, Any], ema: bool) -> list[str]:
    lines = []
    record = final.get("eval")
    if record:
        lines.append(f"Evaluation after step {record['step']} (epoch {record['epoch']:g}):")
        lines += ["", "| weights | loss | top-1 | top-5 |", "|---|---|---|---|"]
        for label, prefix in (("model", ""), ("EMA", "ema_")):
            if f"{prefix}eval_top1" in record and (prefix == "" or ema):
                lines.append(
                    f"| {label} | {record[f'{prefix}eval_loss']:.4f} | {record[f'{prefix}eval_top1']:.2f} % |"
                    f" {record[f'{prefix}eval_top5']:.2f} % |"
                )
    else:
        lines.append("No evaluation was run (data.eval_split or eval.enabled).")
    train = final.get("train")
    if train and isinstance(train.get("loss"), float) and math.isfinite(train["loss"]):
        lines += [
            "",
            f"Training loss {train['loss']:.4f} at step {train['step']} (epoch {train['epoch']:.2f}).",
        ]
    return lines


def _floats(values: Any) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
