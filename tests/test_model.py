"""Model building: timm kwargs, typos in them, local safetensors weights with a strict key check."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import RecipeError
from trainer.model import build_model, validate_model_cfg


def test_build_passes_every_other_key_to_timm():
    model = build_model({"name": "test_vit", "num_classes": 7, "drop_path_rate": 0.1})
    assert model.num_classes == 7


def test_channels_last_is_applied():
    model = build_model({"name": "test_resnet", "channels_last": True})
    conv = next(p for p in model.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_unknown_timm_argument_names_the_key_with_did_you_mean():
    with pytest.raises(RecipeError) as info:
        build_model({"name": "test_vit", "drop_path_rat": 0.1}, device="meta")
    assert info.value.key == "model.drop_path_rat"
    assert "did you mean 'drop_path_rate'" in info.value.message


def test_unknown_model_name_suggests_timm_names():
    with pytest.raises(RecipeError) as info:
        validate_model_cfg({"name": "resnet5O"})
    assert info.value.key == "model.name" and "'resnet50'" in info.value.message


def test_weights_load_from_safetensors(tmp_path):
    source = build_model({"name": "test_resnet", "num_classes": 5})
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    model = build_model({"name": "test_resnet", "num_classes": 5, "weights": str(tmp_path / "w.safetensors")})
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_weights_with_another_num_classes_keep_the_new_head(tmp_path):
    source = build_model({"name": "test_resnet", "num_classes": 1000})
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    model = build_model({"name": "test_resnet", "num_classes": 5, "weights": str(tmp_path / "w.safetensors")})
    assert model.get_classifier().weight.shape[0] == 5
    trunk = [k for k in source.state_dict() if not k.startswith("fc.")]
    assert all(torch.equal(model.state_dict()[k], source.state_dict()[k]) for k in trunk)


def test_weights_of_another_model_list_missing_and_unexpected_keys(tmp_path):
    save_file(build_model({"name": "test_vit"}).state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(RecipeError) as info:
        build_model({"name": "test_resnet", "weights": str(tmp_path / "vit.safetensors")})
    assert info.value.key == "model.weights"
    assert "missing keys" in info.value.message and "unexpected keys" in info.value.message


def test_missing_weights_file_is_an_error(tmp_path):
    with pytest.raises(RecipeError) as info:
        build_model({"name": "test_resnet", "weights": str(tmp_path / "nope.safetensors")})
    assert info.value.key == "model.weights" and "no such file" in info.value.message
