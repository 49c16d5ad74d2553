"""Build the timm model a recipe names, with its initial weights loaded by timm's own machinery.

Initial weights come from one of: `model.weights` (a local safetensors file, timm's
`pretrained_cfg_overlay=dict(file=...)`), a timm model folder named "hf-hub:user/repo" or "local-dir:path", or
timm's pretrained weights for a registry name (`model.pretrained = true`, from the Hugging Face cache).
timm adapts what it knows how to adapt: another num_classes gets a new head, another in_chans an adapted
first conv, another img_size a resampled position embedding (the model's checkpoint filter). The trainer
says what was adapted in one line and turns anything else that does not fit into a RecipeError naming the
keys.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.errors import RecipeError
from trainer.model.create import create, first_line, model_in_chans, model_source


@dataclass
class WeightsSource:
    """Where a recipe's initial weights come from: `key` is the recipe key to blame, `label` names it."""

    key: str
    label: str
    file: Path | None = None
    """A local weights file (model.weights), loaded through pretrained_cfg_overlay."""


def initial_weights(model_cfg: dict[str, Any]) -> WeightsSource | None:
    """The initial weights `[model]` asks for, or None (random initialization)."""
    name, weights = model_cfg["name"], model_cfg.get("weights")
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise RecipeError("model.weights", f"no such file: {weights!r} (relative to {os.getcwd()})")
        return WeightsSource("model.weights", repr(weights), file=path)
    source, _ = model_source(name)
    pretrained = model_cfg.get("pretrained")
    if source is not None and pretrained is not False:
        return WeightsSource("model.name", repr(name))
    if pretrained:
        return WeightsSource("model.pretrained", f"timm's pretrained {name!r}")
    return None


@dataclass
class _TimmLog:
    """What timm reported while loading: the keys its load left missing or unused, and its messages."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def create_with_weights(
    name: str, kwargs: dict[str, Any], source: WeightsSource, device: str | torch.device
) -> torch.nn.Module:
    """create_model(pretrained=True) from `source`, checked and reported (one line on the main process)."""
    target = create(name, kwargs, "meta", key="model.name")  # the architecture the recipe asks for
    cfg = target.pretrained_cfg
    classifiers = _names(cfg.get("classifier"))
    first_conv = _names(cfg.get("first_conv"))
    shapes = _source_shapes(source, target, kwargs.get("cache_dir"))
    overlay = None
    if source.file is not None:
        # A file replaces the source: tell timm its head and input channels (read from the tensors), and pin
        # the recipe's num_classes / in_chans so the overlay does not change the model's defaults.
        known = shapes or {}
        src_classes = next((known[f"{c}.weight"][0] for c in classifiers if f"{c}.weight" in known), 0)
        src_chans = _source_in_chans(target, first_conv, known)
        overlay = {"file": str(source.file), "source": "file", "num_classes": src_classes}
        if src_chans is not None:
            overlay["input_size"] = (src_chans, *cfg.get("input_size", (3, 224, 224))[1:])
        kwargs = {**kwargs, "num_classes": target.num_classes, "in_chans": model_in_chans(target)}
    with _timm_log() as log:
        try:
            model = create(
                name, kwargs, device, source.key, pretrained=True, overlay=overlay, label=source.label
            )
        except RecipeError:
            raise
        except RuntimeError as err:  # torch's load_state_dict: missing / unexpected keys, shapes
            raise RecipeError(
                source.key, f"{source.label} does not fit {_arch(target)}: {_load_error(err)}"
            ) from None
        except Exception as err:  # noqa: BLE001 - a model's checkpoint filter choking on foreign keys
            raise RecipeError(
                source.key, f"{source.label} does not fit {_arch(target)}: {_misfit(err, target, shapes)}"
            ) from None
    src_cfg = model.pretrained_cfg
    src_classes = overlay["num_classes"] if overlay else src_cfg.get("num_classes")
    new_head = classifiers and src_classes is not None and src_classes != model.num_classes
    allowed = {f"{c}.{p}" for c in classifiers for p in ("weight", "bias")} if new_head else set()
    stem_reinit = any("Unable to convert" in m for m in log.messages)
    if stem_reinit:
        allowed |= {f"{c}.weight" for c in first_conv}
    missing = [k for k in log.missing if k not in allowed]
    if missing or log.unexpected:
        raise RecipeError(
            source.key, f"{source.label} does not fit {_arch(model)}: {_key_lists(missing, log.unexpected)}"
        )
    report = _report(model, source, shapes, log, classifiers, first_conv, src_classes if new_head else None)
    if int(os.environ.get("RANK", "0")) == 0:
        print(report, flush=True)
    return model


def _report(
    model: torch.nn.Module,
    source: WeightsSource,
    shapes: dict[str, tuple[int, ...]] | None,
    log: _TimmLog,
    classifiers: tuple[str, ...],
    first_conv: tuple[str, ...],
    src_classes: int | None,
) -> str:
    """One line: where the weights came from and what timm adapted or dropped to fit the model."""
    own = model.state_dict()
    parts = []
    if src_classes is not None:
        parts.append(f"new head {', '.join(classifiers)} ({src_classes} -> {model.num_classes} classes)")
    src_chans = (model.pretrained_cfg.get("input_size") or (3,))[0]
    if source.file is not None and shapes is not None:
        src_chans = _source_in_chans(model, first_conv, shapes) or src_chans
    chans = model_in_chans(model)
    if any("Unable to convert" in m for m in log.messages):
        parts.append(
            f"first conv {', '.join(first_conv)} initialized anew (cannot adapt {src_chans} channels)"
        )
    elif src_chans != chans:
        parts.append(f"first conv {', '.join(first_conv)} adapted from {src_chans} to {chans} input channels")
    handled = {f"{c}.{p}" for c in (*classifiers, *first_conv) for p in ("weight", "bias")}
    if shapes is not None:
        for key, shape in shapes.items():
            if key in own and key not in handled and tuple(own[key].shape) != tuple(shape):
                parts.append(f"resampled {key} {list(shape)} -> {list(own[key].shape)}")
    else:
        parts.extend(m.rstrip(".").lower() for m in log.messages if m.startswith("Resized"))
    what = "; ".join(parts) if parts else f"all {len(own)} tensors loaded as they are"
    return f"initial weights {source.label} -> {_arch(model)}: {what}"


@contextmanager
def _timm_log() -> Iterator[_TimmLog]:
    """Collect timm's log records while it loads (its load result: missing and unexpected keys, the
    adaptations it made); they are summarized in our one line instead of printed."""
    log = _TimmLog()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            m = re.match(r"(Missing|Unexpected) keys \((.*)\) (discovered|found)", text, re.S)
            if m:
                keys = [k.strip() for k in m.group(2).split(",") if k.strip()]
                (log.missing if m.group(1) == "Missing" else log.unexpected).extend(keys)
            else:
                log.messages.append(text)

    logger = logging.getLogger("timm")
    handler = Collect(logging.INFO)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield log
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _source_shapes(
    source: WeightsSource, target: torch.nn.Module, cache_dir: str | None = None
) -> dict[str, tuple[int, ...]] | None:
    """Tensor shapes of the weights timm will load, read from the file's header (no tensor is loaded);
    None where the file is not a local safetensors file (not cached yet, or another format)."""
    path = source.file or _cached_weights_file(target, cache_dir)
    if path is None or path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as err:  # noqa: BLE001 - any unreadable file is the recipe's problem
        raise RecipeError(source.key, f"cannot read {str(path)!r}: {first_line(err)}") from None


def _cached_weights_file(target: torch.nn.Module, cache_dir: str | None = None) -> Path | None:
    """The local file timm loads for `target`'s pretrained_cfg: the local-dir's preferred file, or the
    Hugging Face cache's model.safetensors of the hub repo."""
    cfg = target.pretrained_cfg
    if cfg.get("source") == "local-dir" and cfg.get("file"):
        from timm.models import _hub

        folder = Path(cfg["file"])
        preferred = getattr(_hub, "_PREFERRED_FILES", ("model.safetensors", "pytorch_model.bin"))
        return next((folder / f for f in preferred if (folder / f).is_file()), None)
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache
        from timm.models._hub import hf_split

        repo, revision = hf_split(cfg["hf_hub_id"])
        filename = cfg.get("hf_hub_filename") or "model.safetensors"
        found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision)
        return Path(found) if isinstance(found, str) else None
    return None


def _source_in_chans(
    model: torch.nn.Module, first_conv: tuple[str, ...], shapes: dict[str, tuple[int, ...]]
) -> int | None:
    """Input channels the weights were trained for, from the first conv's weight (timm's own rule:
    weight.shape[1] x target channels x groups = source channels x target in_channels)."""
    for name in first_conv:
        shape = shapes.get(f"{name}.weight")
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        if shape is None or len(shape) != 4 or not isinstance(module, torch.nn.Conv2d):
            continue
        numerator = shape[1] * model_in_chans(model) * module.groups
        if numerator % module.in_channels == 0:
            return numerator // module.in_channels
    return None


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _arch(model: torch.nn.Module) -> str:
    return str(model.pretrained_cfg.get("architecture") or type(model).__name__)


def _load_error(err: RuntimeError) -> str:
    """torch's load_state_dict error (several lines) as one: missing and unexpected keys, shape mismatches."""
    text = str(err)
    missing = re.search(r"Missing key\(s\) in state_dict: (.*?)\.\s*$", text, re.M)
    unexpected = re.search(r"Unexpected key\(s\) in state_dict: (.*?)\.\s*$", text, re.M)
    mismatches = re.findall(
        r"size mismatch for ([^:]+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from checkpoint,"
        r" the shape in current model is torch\.Size\(\[([^\]]*)\]\)",
        text,
    )
    if not (missing or unexpected or mismatches):
        return first_line(err)
    parts = []
    listed = _key_lists(
        re.findall(r'"([^"]+)"', missing.group(1)) if missing else [],
        re.findall(r'"([^"]+)"', unexpected.group(1)) if unexpected else [],
    )
    if listed:
        parts.append(listed)
    if mismatches:
        shown = [f"{k} [{a}] in the weights, [{b}] in the model" for k, a, b in mismatches[:3]]
        more = f", ... ({len(mismatches)})" if len(mismatches) > 3 else ""
        parts.append("shapes differ: " + ", ".join(shown) + more)
    return "; ".join(parts)


def _misfit(err: Exception, target: torch.nn.Module, shapes: dict[str, tuple[int, ...]] | None) -> str:
    """Why timm could not load the weights (its checkpoint filter failed): the keys they and the model do not
    share, where the weights' keys are known, else timm's error."""
    if shapes is not None:
        own = target.state_dict()
        listed = _key_lists([k for k in own if k not in shapes], [k for k in shapes if k not in own])
        if listed:
            return listed
    return f"timm could not load them: {type(err).__name__}: {first_line(err)}"


def _key_lists(missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing keys {_short(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_short(unexpected)}")
    return "; ".join(parts)


def _short(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)})"


def load_exact(model: torch.nn.Module, path: str | Path, key: str = "weights") -> None:
    """Load a safetensors state dict as it is (evaluation: nothing adapted); a file that does not fit
    exactly is a RecipeError naming the keys."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise RecipeError(key, f"no such file: {str(path)!r}")
    try:
        state = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - an unreadable file is the user's input
        raise RecipeError(key, f"cannot read {str(path)!r}: {first_line(err)}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RecipeError(key, f"{str(path)!r} does not fit {_arch(model)}: {_load_error(err)}") from None
