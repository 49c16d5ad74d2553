"""The port's model table against MMPretrain's metafiles: every ImageClassifier config whose backbone the port
maps becomes a timm model with the parameter count MMPretrain publishes for it (exactly, or within 0.2%).

tests/fixtures/mmpretrain/metafile_params.json holds each config's model and published count (written by
make_metafile_params.py from an MMPretrain checkout); the timm models are built on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from timm.utils.model import reparameterize_model

from trainer.errors import RecipeError
from trainer.model import build_model
from trainer.port.classifier import map_classifier
from trainer.port.report import Report

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mmpretrain" / "metafile_params.json"
ROWS = json.loads(FIXTURE.read_text())["models"]
"""Metafile counts; ResNeSt, which has no metafile, with the count of MMPretrain 1.2.0's model."""
REPARAMETERIZED = ("RepVGG", "MobileOne")
"""MMPretrain publishes these families' counts in the fused (deploy) form: compared after timm's
reparameterize_model."""
KNOWN_WRONG = {
    "convnext/convnext-base_32xb128_in21k.py": "the metafile counts the 1k-class model",
    "convnext/convnext-large_64xb64_in21k.py": "the config builds ConvNeXt-B (its _base_ model), the "
    "metafile counts ConvNeXt-L",
    "convnext/convnext-xlarge_64xb64_in21k.py": "the config builds ConvNeXt-B, the metafile counts "
    "ConvNeXt-XL",
    "csra/resnet101-csra_1xb16_voc07-448px.py": "the CSRA head is not timm's; the metafile's 23.55M is not "
    "ResNet-101's 42.5M either",
    "glip/glip-t_headless.py": "GLIP's Swin has extra layers",
    "glip/glip-l_headless.py": "GLIP's Swin has extra layers",
    "regnet/regnetx-3.2gf_8xb64_in1k.py": "metafile typo: 3.21M for 15.3M",
    "repvgg/repvgg-B0_8xb32_in1k.py": "metafile typo: 3.42M for 14.34M",
    "resnet/resnet34_8xb32_in1k.py": "metafile typo: 2.18M for 21.8M",
    "spark/benchmarks/resnet50_8xb256-coslr-300e_in1k.py": "the metafile counts the backbone without its fc",
}
MUST_MAP = {
    "XCiT", "VGG", "DenseNet", "InceptionV3", "TinyViT", "EdgeNeXt", "PCPVT", "SVT", "PoolFormer", "MViT",
    "DaViT", "EfficientFormer", "MobileViT", "ConvMixer", "MlpMixer", "TNT", "CSPDarkNet", "CSPResNet",
    "CSPResNeXt", "ResNeSt", "ViTEVA02", "MobileOne", "LeViT", "MobileNetV3", "SwinTransformer",
    "SwinTransformerV2", "ResNeXt", "ResNet", "ConvNeXt", "EfficientNet", "EfficientNetV2", "DeiT3", "RepVGG",
    "BEiTViT",
}  # fmt: skip
"""Backbone types every metafile config of which must port (issue 24's families and the ones before)."""
STILL_REFUSED = {
    "eva/eva-g-p16_headless.py": "timm's EVA-g has patch 14 only",
    "repvgg/repvgg-B1g2_8xb32_in1k.py": "timm has no RepVGG-B1g2",
}


def ported(row: dict) -> dict:
    return map_classifier({"model": {"type": "ImageClassifier", **row["model"]}}, Report()).model


def distinct_models() -> dict[str, dict]:
    """One row per distinct (timm model, published count): many configs share both."""
    out: dict[str, dict] = {}
    for row in ROWS:
        try:
            model = ported(row)
        except RecipeError:
            continue
        shape = {k: v for k, v in model.items() if "drop" not in k}  # dropout rates add no parameters
        out.setdefault(json.dumps([shape, row["params"]], sort_keys=True), row)
    return out


MODELS = distinct_models()


def published_tolerance(published: int) -> float:
    """0.2%, or half a unit of the last digit the metafile gives where it rounded (1.59M = 1590000)."""
    zeros = len(str(published)) - len(str(published).rstrip("0"))
    return max(0.002 * published, 10**zeros / 2 if zeros >= 3 else 0)


@pytest.mark.parametrize("row", list(MODELS.values()), ids=[r["config"] for r in MODELS.values()])
def test_timm_model_has_the_parameter_count_mmpretrain_publishes(row):
    model_cfg = ported(row)
    with torch.device("meta"):
        model = build_model(model_cfg, device="meta")
        if row["model"]["backbone"]["type"] in REPARAMETERIZED:
            model = reparameterize_model(model)
    count = sum(p.numel() for p in model.parameters())
    if row["config"] in KNOWN_WRONG:
        assert abs(count - row["params"]) > published_tolerance(row["params"]), "no longer wrong: drop it"
        return
    assert abs(count - row["params"]) <= published_tolerance(row["params"]), (model_cfg, count, row["params"])


def test_every_config_of_the_mapped_families_ports():
    refused = {}
    for row in ROWS:
        if row["model"]["backbone"]["type"] not in MUST_MAP:
            continue
        try:
            ported(row)
        except RecipeError as err:
            refused[row["config"]] = err.message
    assert set(refused) == set(STILL_REFUSED) & {r["config"] for r in ROWS}, refused


def test_the_issue_families_map_to_the_timm_models_named_for_them():
    names = {}
    for row in ROWS:
        if row["model"]["backbone"]["type"] in MUST_MAP and row["config"] not in STILL_REFUSED:
            names[row["config"]] = ported(row)["name"]
    assert all(timm.is_model(n) for n in names.values())
    expected = {
        "xcit/xcit-small-24-p8_8xb128_in1k.py": "xcit_small_24_p8_224",
        "vgg/vgg13bn_8xb32_in1k.py": "vgg13_bn",
        "densenet/densenet161_4xb256_in1k.py": "densenet161",
        "inception_v3/inception-v3_8xb32_in1k.py": "inception_v3",
        "tinyvit/tinyvit-21m-distill_8xb256_in1k-384px.py": "tiny_vit_21m_384",
        "edgenext/edgenext-xxsmall_8xb256_in1k.py": "edgenext_xx_small",
        "twins/twins-pcpvt-large_16xb64_in1k.py": "twins_pcpvt_large",
        "twins/twins-svt-small_8xb128_in1k.py": "twins_svt_small",
        "poolformer/poolformer-m48_32xb128_in1k.py": "poolformer_m48",
        "mvit/mvitv2-large_8xb256_in1k.py": "mvitv2_large",
        "davit/davit-tiny_4xb256_in1k.py": "davit_tiny",
        "efficientformer/efficientformer-l7_8xb128_in1k.py": "efficientformer_l7",
        "mobilevit/mobilevit-xxsmall_8xb128_in1k.py": "mobilevit_xxs",
        "convmixer/convmixer-1024-20_10xb64_in1k.py": "convmixer_1024_20_ks9_p14",
        "mlp_mixer/mlp-mixer-large-p16_64xb64_in1k.py": "mixer_l16_224",
        "tnt/tnt-s-p16_16xb64_in1k.py": "tnt_s_legacy_patch16_224",
        "cspnet/cspresnext50_8xb32_in1k.py": "cspresnext50",
        "resnest/resnest200_64xb32_in1k.py": "resnest200e",
        "eva02/eva02-large-p14_in1k.py": "eva02_large_patch14_448",
        "eva/eva-g-p14_8xb16_in1k-560px.py": "eva_giant_patch14_560",
        "eva/eva-l-p14_8xb16_in1k-196px.py": "eva_large_patch14_196",
        "mobileone/mobileone-s3_8xb32_in1k.py": "mobileone_s3",
        "levit/levit-128s_8xb256_in1k.py": "levit_128s",
        "mobilenet_v3/mobilenet-v3-small-075_8xb128_in1k.py": "mobilenetv3_small_075",
        "swin_transformer/swin-large_16xb64_in1k-384px.py": "swin_large_patch4_window12_384",
        "swin_transformer_v2/swinv2-base-w16_16xb64_in1k-256px.py": "swinv2_base_window16_256",
        "resnext/resnext152-32x4d_8xb32_in1k.py": "resnext101_32x4d",
    }
    assert {c: names.get(c) for c in expected} == expected


def test_arguments_that_select_the_architecture_are_carried():
    by_config = {row["config"]: row for row in ROWS}
    resnext = ported(by_config["resnext/resnext152-32x4d_8xb32_in1k.py"])
    assert resnext["layers"] == [3, 8, 36, 3]
    levit = ported(by_config["levit/levit-256_8xb256_in1k.py"])
    assert levit["distilled"] is False
    swinv2 = ported(by_config["swin_transformer_v2/swinv2-large-w24_in21k-pre_16xb64_in1k-384px.py"])
    assert (swinv2["window_size"], swinv2["img_size"]) == (24, 384)
    assert swinv2["pretrained_window_sizes"] == [12, 12, 12, 6]
    tinyvit = ported(by_config["tinyvit/tinyvit-21m-distill_8xb256_in1k-512px.py"])
    assert tinyvit["name"] == "tiny_vit_21m_512" and "window_sizes" not in tinyvit
    vgg = ported(by_config["vgg/vgg16_8xb32_in1k.py"])
    assert vgg["num_classes"] == 1000 and vgg["name"] == "vgg16"
