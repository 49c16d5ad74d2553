"""`model = dict(type='ImageClassifier', ...)`: the timm model, the head's classes and loss, batch mixing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.errors import RecipeError
from trainer.port.backbones import map_backbone
from trainer.port.models import NoTimmModel, TimmModel
from trainer.port.report import Report

HEADS = ("LinearClsHead", "VisionTransformerClsHead", "DeiTClsHead", "StackedLinearClsHead", "ClsHead")
HEADS += ("EfficientFormerClsHead", "LeViTClsHead")
NECKS = (None, "GlobalAveragePooling")


@dataclass
class ClassifierPort:
    """The recipe's [model], the [train] loss keys, [mixup] (or None) and the parameter-name family."""

    model: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    mixup: dict[str, Any] | None = None
    family: str | None = None
    head: str | None = None


def map_classifier(cfg: dict[str, Any], report: Report, override: str | None = None) -> ClassifierPort:
    """Map `cfg["model"]`; `override` (--model) names the timm model instead of the backbone's match."""
    model = cfg.get("model")
    if not isinstance(model, dict):
        if override is None:
            raise RecipeError(
                "model", "the config has no model (a schedule or dataset base?); pass --model NAME"
            )
        report.note("model", f"none in the config: --model {override}")
        return ClassifierPort({"name": override})
    kind = model.get("type")
    if kind == "TimmClassifier":
        return _timm_classifier(model, report, override)
    if kind != "ImageClassifier":
        if override is None:
            raise RecipeError(
                "model.type", f"{kind!r} is not an ImageClassifier; pass --model NAME to port the rest"
            )
        report.skip("model.type", f"{kind!r} is not an ImageClassifier: only --model {override} is used")
        return ClassifierPort({"name": override})
    timm_model = _backbone(model.get("backbone") or {}, report, override)
    port = ClassifierPort({"name": timm_model.name}, family=timm_model.family)
    _neck(model.get("neck"), report)
    head = model.get("head") or {}
    if not head:
        report.skip("model.head", "None (a headless backbone): the recipe's model has no classifier")
        port.model["num_classes"] = 0
    else:
        port.head = head.get("type")
        _head(head, port, timm_model, report)
    port.model.update(timm_model.kwargs)
    _augments(model.get("train_cfg") or {}, port, report)
    for key, init in (("model.init_cfg", model.get("init_cfg")),):
        _init(init, key, report)
    return port


def _backbone(backbone: dict[str, Any], report: Report, override: str | None) -> TimmModel:
    key = "model.backbone"
    if override is None:
        try:
            timm_model = map_backbone(backbone, key, report)
        except NoTimmModel as err:
            raise RecipeError(f"{key}.type", f"{err}; pass --model NAME to choose the timm model") from None
        _init(backbone.get("init_cfg"), f"{key}.init_cfg", report)
        return timm_model
    try:
        matched = map_backbone(backbone, key, Report())
    except NoTimmModel as err:
        report.note(key, f"{backbone.get('type')!r}: {err}; --model {override} is used")
        return TimmModel(override, {})
    _init(backbone.get("init_cfg"), f"{key}.init_cfg", report)
    if matched.name == override:
        return map_backbone(backbone, key, report)
    report.note(key, f"{backbone.get('type')!r} would be {matched.name}; --model {override} is used")
    kwargs = {k: v for k, v in matched.kwargs.items() if k == "drop_path_rate"}
    return TimmModel(override, kwargs)


def _timm_classifier(model: dict[str, Any], report: Report, override: str | None) -> ClassifierPort:
    name = override or model.get("model_name")
    if not isinstance(name, str):
        raise RecipeError("model.model_name", "TimmClassifier without a model_name; pass --model NAME")
    port = ClassifierPort({"name": name})
    for arg, value in model.items():
        if arg in ("type", "model_name", "loss", "train_cfg", "data_preprocessor", "init_cfg"):
            continue
        if arg == "pretrained":
            if value:
                report.skip(
                    "model.pretrained", "timm's pretrained weights are not downloaded: set model.weights"
                )
            continue
        if arg == "checkpoint_path" and value:
            report.skip(
                "model.checkpoint_path", f"{value!r}: convert it to safetensors and set model.weights"
            )
            continue
        if isinstance(value, (bool, int, float, str)):
            port.model[arg] = value
        else:
            report.skip(f"model.{arg}", f"{value!r} is not a plain timm argument")
    _loss(model.get("loss"), "model.loss", port, report, port.model.get("num_classes", 1000))
    _augments(model.get("train_cfg") or {}, port, report)
    _init(model.get("init_cfg"), "model.init_cfg", report)
    return port


def _neck(neck: Any, report: Report) -> None:
    kind = neck.get("type") if isinstance(neck, dict) else neck
    if kind not in NECKS:
        report.skip("model.neck", f"{kind!r}: timm's model pools as its family does")
    elif isinstance(neck, dict) and any(k not in ("type", "dim") for k in neck):
        report.skip("model.neck", f"{neck!r}: only the plain global average pooling maps")


def _head(head: dict[str, Any], port: ClassifierPort, timm_model: TimmModel, report: Report) -> None:
    kind = head.get("type")
    if kind not in HEADS:
        report.skip("model.head.type", f"{kind!r}: timm's own classifier of {timm_model.name} is used")
    num_classes = head.get("num_classes")
    if isinstance(num_classes, int):
        port.model["num_classes"] = num_classes
    if head.get("hidden_dim"):
        report.skip("model.head.hidden_dim", f"{head['hidden_dim']!r}: timm's head has no hidden layer")
    if head.get("dropout_rate"):
        port.model["drop_rate"] = float(head["dropout_rate"])
    if kind == "StackedLinearClsHead":
        width = [1024] if "small" in timm_model.name else [1280]  # timm's MobileNetV3 head (conv_head) width
        if head.get("mid_channels") != width:
            report.skip(
                "model.head.mid_channels", f"{head.get('mid_channels')!r}: {timm_model.name}'s is {width}"
            )
    _distillation(head, timm_model, report)
    _init(head.get("init_cfg"), "model.head.init_cfg", report)
    _loss(head.get("loss"), "model.head.loss", port, report, num_classes or 1000)


def _distillation(head: dict[str, Any], timm_model: TimmModel, report: Report) -> None:
    """LeViT's and EfficientFormer's heads add a distillation classifier, which MMPretrain's loss refuses
    (NotImplementedError): their configs evaluate only."""
    kind = head.get("type")
    if kind not in ("LeViTClsHead", "EfficientFormerClsHead") or not head.get("distillation", True):
        return
    key, why = "model.head.distillation", "True (MMPretrain cannot train with it, only evaluate the average)"
    if timm_model.kwargs.get("distilled") is False:
        report.skip(key, f"{why}: timm's {timm_model.name} has one classifier; the other is left out")
    else:
        report.note(key, f"{why}: timm's {timm_model.name} trains and evaluates the average of its two")


def _loss(loss: Any, key: str, port: ClassifierPort, report: Report, num_classes: int) -> None:
    if loss is None:
        return
    kind = loss.get("type")
    if loss.get("loss_weight", 1.0) != 1.0:
        report.skip(f"{key}.loss_weight", f"{loss['loss_weight']!r}: the recipe's loss has weight 1")
    if loss.get("class_weight") is not None:
        report.skip(f"{key}.class_weight", "per-class weights are not a recipe setting")
    if loss.get("reduction", "mean") != "mean":
        report.skip(f"{key}.reduction", f"{loss['reduction']!r}: the recipe averages")
    if kind == "CrossEntropyLoss":
        if loss.get("use_sigmoid"):
            port.train["loss"] = "bce"
        if loss.get("use_mask"):
            report.skip(f"{key}.use_mask", "masked binary cross-entropy is not a recipe setting")
    elif kind == "LabelSmoothLoss":
        mode = loss.get("mode", "original")
        if mode != "original":
            report.skip(f"{key}.mode", f"{mode!r}: only 'original' ((1 - e) y + e / K) is timm's smoothing")
        if loss.get("use_sigmoid"):  # BCE on (1 - e) y + e / K: timm's BinaryCrossEntropy(smoothing=e)
            port.train["loss"] = "bce"
        port.train["label_smoothing"] = float(loss.get("label_smooth_val", 0.0))
    else:
        report.skip(f"{key}.type", f"{kind!r}: the recipe trains with cross-entropy")


def _augments(train_cfg: dict[str, Any], port: ClassifierPort, report: Report) -> None:
    augments = train_cfg.get("augments")
    for arg in train_cfg:
        if arg not in ("augments", "probs"):
            report.skip(f"model.train_cfg.{arg}", f"{train_cfg[arg]!r} is not a recipe setting")
    if not augments:
        return
    if isinstance(augments, dict):
        augments = [augments]
    mix: dict[str, Any] = {"mixup_alpha": 0.0, "cutmix_alpha": 0.0}
    probs = train_cfg.get("probs")
    kinds = []
    for i, aug in enumerate(augments):
        key = f"model.train_cfg.augments[{i}]"
        kind = aug.get("type")
        kinds.append(kind)
        if kind == "Mixup":
            mix["mixup_alpha"] = float(aug.get("alpha", 1.0))
        elif kind == "CutMix":
            mix["cutmix_alpha"] = float(aug.get("alpha", 1.0))
            if aug.get("cutmix_minmax") is not None:
                mix["cutmix_minmax"] = [float(v) for v in aug["cutmix_minmax"]]
            if not aug.get("correct_lam", True):
                mix["correct_lam"] = False
        else:
            report.skip(key, f"{kind!r} is not timm's Mixup or CutMix")
        extra = set(aug) - {"type", "alpha", "cutmix_minmax", "correct_lam"}
        for arg in sorted(extra):
            report.skip(f"{key}.{arg}", f"{aug[arg]!r} is not a timm Mixup argument")
    if len(kinds) > 2 or len(set(kinds)) != len(kinds):
        report.skip(
            "model.train_cfg.augments", "more than one Mixup and one CutMix: timm mixes with one of each"
        )
    if probs is None:
        mix["prob"] = 1.0
        mix["switch_prob"] = 0.5
    else:
        probs = list(probs) if isinstance(probs, (list, tuple)) else [probs]
        by_kind = dict(zip(kinds, probs, strict=False))
        p, q = float(by_kind.get("Mixup", 0.0)), float(by_kind.get("CutMix", 0.0))
        mix["prob"] = p + q
        mix["switch_prob"] = q / (p + q) if p + q > 0 else 0.5
    if mix["mixup_alpha"] or mix["cutmix_alpha"] or "cutmix_minmax" in mix:
        port.mixup = mix


def _init(init: Any, key: str, report: Report) -> None:
    if not init:
        return
    entries = init if isinstance(init, list) else [init]
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "Pretrained":
            where = entry.get("checkpoint", "?")
            report.skip(
                key,
                f"Pretrained {where!r}: MMPretrain's weights, not timm's; convert them to timm's parameter "
                "names as .safetensors and set model.weights",
            )
    others = [e.get("type") for e in entries if isinstance(e, dict) and e.get("type") != "Pretrained"]
    if others:
        report.skip(
            key, f"{', '.join(map(str, others))} initialization is not applied: timm initializes the model"
        )
