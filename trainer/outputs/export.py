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
    """What the card and config.json say about the data: label names and split sizes, where readable."""

    label_names: list[str] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    hub_name: str | None = None


def describe_data(data_cfg: dict[str, Any]) -> DataSummary:
    """Label names of the train split (a ClassLabel's names), split sizes and the hub name of the dataset;
    best effort: data that cannot be read now gives an empty summary."""
    from trainer.data import data_config, open_source, quiet_progress_bars

    summary = DataSummary()
    try:
        cfg = data_config(data_cfg)
        with quiet_progress_bars():
            source = open_source(cfg)
            if source.format == "hub":
                summary.hub_name = cfg.path
            names = source.split_names()
            splits = {
                role: source.split(name)
                for role, name in (("train", cfg.train_split), ("eval", cfg.eval_split))
                if name in names
            }
    except Exception:  # noqa: BLE001 - the card is written without what cannot be read
        return summary
    summary.sizes = {role: len(split) for role, split in splits.items()}
    if "train" in splits:
        summary.label_names = splits["train"].label_names(cfg.label_column)
    return summary


def training_command() -> str | None:
    """The command line that is training now (scripts/train.py's), with its launcher, or None."""
    argv = list(sys.argv)
    if not argv or not argv[0].endswith("train.py"):
        return None
    script = os.path.relpath(argv[0]) if not os.path.relpath(argv[0]).startswith("..") else argv[0]
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"accelerate launch --num_processes {processes}" if processes > 1 else "python"
    return " ".join([launcher, *(shlex.quote(a) for a in [script, *argv[1:]])])


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


def usage(location: str) -> str:
    """The card's usage block for a model at `location` ("local-dir:runs/x" or "hf-hub:user/repo")."""
    return (
        "```python\n"
        "import timm\n\n"
        f'model = timm.create_model("{location}", pretrained=True).eval()\n'
        "config = timm.data.resolve_data_config(model=model)  # the eval pipeline of the run\n"
        "transform = timm.data.create_transform(**config)\n"
        "top5 = model(transform(image).unsqueeze(0)).softmax(-1).topk(5)\n"
        "```\n"
    )


def model_card(
    run_dir: Path,
    cfg: dict[str, Any],
    model: torch.nn.Module,
    data: DataSummary,
    processes: int | None = None,
    command: str | None = None,
) -> str:
    """README.md: the Hub's metadata header, what was trained on what, final metrics, usage, the command and
    the resolved recipe."""
    arch = model.pretrained_cfg.get("architecture") or type(model).__name__
    num_classes = getattr(model, "num_classes", None)
    params = sum(p.numel() for p in model.parameters())
    final = final_metrics(read_metrics(run_dir))
    data_cfg, train_cfg = cfg["data"], cfg["train"]
    header = ["---", "library_name: timm", "pipeline_tag: image-classification", "tags:"]
    header += ["- image-classification", "- timm"]
    if data.hub_name:
        header += ["datasets:", f"- {data.hub_name}"]
    header.append("---")
    lines = [*header, CARD_MARK, f"# {run_dir.name}", ""]
    lines.append(
        f"A timm `{arch}` image classifier ({params / 1e6:.2f} M parameters, {num_classes} classes) trained"
        f" by `trainer` from the recipe below on `{data_cfg['path']}`."
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
    lines.append(f"- **Data:** `{data_cfg['path']}`" + (f": {sizes}" if sizes else ""))
    length = f"{train_cfg['epochs']} epochs" if "epochs" in train_cfg else f"{train_cfg['max_steps']} steps"
    batch = f"batch {data_cfg['batch_size']} per process x accumulate {train_cfg.get('accumulate', 1)}"
    if processes:
        batch += f" x {processes} process{'es' if processes > 1 else ''}"
    lines.append(
        f"- **Training:** {length}, {batch}, {cfg['optimizer']['type']} lr {cfg['optimizer'].get('lr')}"
    )
    start = cfg["model"].get("weights") or (cfg["model"]["name"] if ":" in cfg["model"]["name"] else None)
    if cfg["model"].get("pretrained"):
        start = f"timm's pretrained `{cfg['model']['name']}`"
    lines.append(
        f"- **Initial weights:** {f'`{start}`' if start and '`' not in start else start or 'random'}"
    )
    lines += ["", "## Results", ""]
    lines += _results(final, bool(cfg.get("ema", {}).get("enabled")))
    lines += ["", "## Usage", "", usage(f"local-dir:{run_dir}")]
    lines.append(f"Weights: `{WEIGHTS_FILE}`, keys as in the timm model's `state_dict()`.")
    if cfg.get("ema", {}).get("enabled"):
        ema_file = run_dir / EMA_WEIGHTS_FILE
        lines[-1] += (
            f" The EMA weights, `{EMA_WEIGHTS_FILE}`, load into the same model:"
            f' `model.load_state_dict(safetensors.torch.load_file("{ema_file}"))`.'
        )
    lines += [
        "",
        "```bash",
        f"python scripts/evaluate.py {run_dir}            # top-1, top-5, loss on the eval split",
    ]
    lines += [f"python scripts/plot_metrics.py {run_dir} --out curves.png", "```", "", "## Command", ""]
    if command:
        lines += ["Trained with", "", "```bash", command, "```", ""]
    lines.append(
        f"`{RECIPE_FILE}` here is the resolved recipe (bases and `--set` applied); it trains again with"
        f" `accelerate launch scripts/train.py {run_dir / RECIPE_FILE} --set output_dir=OTHER_DIR`."
    )
    recipe_text = (run_dir / RECIPE_FILE).read_text().rstrip()
    lines += ["", "## Recipe", "", "```toml", recipe_text, "```", ""]
    return "\n".join(lines)


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
