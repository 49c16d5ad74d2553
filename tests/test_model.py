"""Model building: timm kwargs, typos in them, local safetensors weights with a strict key check."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import RecipeError
from trainer.model import build_model, load_exact, validate_model_cfg


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


# --- initial weights through timm's machinery -------------------------------------------------------------


def save_weights(path, model) -> str:
    save_file(model.state_dict(), path)
    return str(path)


def report(capsys) -> str:
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_vit_weights_at_32_px_load_at_64_px_with_a_resampled_position_embedding(tmp_path, capsys):
    from timm.layers import resample_abs_pos_embed

    source = build_model({"name": "test_vit", "num_classes": 4, "img_size": 32})
    weights = save_weights(tmp_path / "vit32.safetensors", source)
    model = build_model({"name": "test_vit", "num_classes": 4, "img_size": 64, "weights": weights})
    assert report(capsys) == (
        f"initial weights {weights!r} -> test_vit: resampled pos_embed [1, 5, 64] -> [1, 17, 64]"
    )
    expected = resample_abs_pos_embed(source.pos_embed.detach(), new_size=(4, 4), num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed.detach(), expected)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items() if k != "pos_embed")


def test_weights_load_into_a_1_channel_model_with_an_adapted_stem(tmp_path, capsys):
    source = build_model({"name": "test_resnet", "num_classes": 4})
    weights = save_weights(tmp_path / "rgb.safetensors", source)
    model = build_model({"name": "test_resnet", "num_classes": 4, "in_chans": 1, "weights": weights})
    assert report(capsys).endswith(": first conv conv1.0 adapted from 3 to 1 input channels")
    stem = source.conv1[0].weight.detach()
    torch.testing.assert_close(model.conv1[0].weight.detach(), stem.sum(dim=1, keepdim=True))  # timm's rule
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_a_new_head_and_in_chans_together_are_one_line(tmp_path, capsys):
    weights = save_weights(tmp_path / "vit.safetensors", build_model({"name": "test_vit", "img_size": 32}))
    build_model({"name": "test_vit", "img_size": 32, "num_classes": 3, "in_chans": 1, "weights": weights})
    assert report(capsys).endswith(
        "new head head (1000 -> 3 classes); first conv patch_embed.proj adapted from 3 to 1 input channels"
    )


def test_weights_that_fit_exactly_say_so(tmp_path, capsys):
    weights = save_weights(
        tmp_path / "w.safetensors", build_model({"name": "test_convnext", "num_classes": 4})
    )
    build_model({"name": "test_convnext", "num_classes": 4, "weights": weights})
    assert report(capsys).endswith("test_convnext: all 101 tensors loaded as they are")


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ({"name": "test_vit", "num_classes": 4}, {"name": "test_resnet", "num_classes": 4}),  # strict load
        ({"name": "test_vit", "num_classes": 4}, {"name": "test_resnet", "num_classes": 9}),  # new head
        ({"name": "test_resnet", "num_classes": 4}, {"name": "test_convnext", "num_classes": 4}),  # filter
    ],
)
def test_weights_of_another_architecture_name_the_keys(tmp_path, source, target):
    weights = save_weights(tmp_path / "other.safetensors", build_model(source))
    with pytest.raises(RecipeError) as info:
        build_model({**target, "weights": weights})
    assert info.value.key == "model.weights"
    assert f"does not fit {target['name']}: missing keys [" in info.value.message
    assert "unexpected keys [" in info.value.message and "\n" not in str(info.value)


def test_shapes_timm_cannot_adapt_are_named(tmp_path):
    weights = save_weights(
        tmp_path / "wide.safetensors", build_model({"name": "test_resnet", "num_classes": 4})
    )
    with pytest.raises(RecipeError) as info:
        build_model({"name": "test_resnet", "num_classes": 4, "stem_width": 8, "weights": weights})
    assert "shapes differ: conv1.0.weight [" in info.value.message and "\n" not in str(info.value)


def test_a_timm_model_folder_loads_with_local_dir(tmp_path, capsys):
    from timm.models._hub import save_for_hf

    source = build_model({"name": "test_vit", "num_classes": 4, "img_size": 32})
    save_for_hf(source, str(tmp_path / "folder"), safe_serialization=True)
    name = f"local-dir:{tmp_path / 'folder'}"
    model = build_model(
        {"name": name}
    )  # architecture and arguments from config.json, weights from the folder
    assert report(capsys).endswith("test_vit: all 80 tensors loaded as they are")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
    build_model({"name": name, "num_classes": 7})
    assert report(capsys).endswith("test_vit: new head head (4 -> 7 classes)")
    random = build_model({"name": name, "pretrained": False})  # the architecture only
    assert capsys.readouterr().out == "" and not torch.equal(random.pos_embed, source.pos_embed)
    validate_model_cfg({"name": name})


def hub_cache(root, repo: str, files: dict[str, bytes]):
    """A Hugging Face cache holding `files` of `repo` (huggingface_hub's documented cache layout)."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)
    return root


def test_pretrained_weights_load_from_the_hugging_face_cache(tmp_path, capsys):
    from safetensors.torch import save

    source = build_model({"name": "test_resnet"})  # timm's test_resnet.r160_in1k: 1000 classes
    cache = hub_cache(
        tmp_path, "timm/test_resnet.r160_in1k", {"model.safetensors": save(source.state_dict())}
    )
    model = build_model(
        {"name": "test_resnet", "pretrained": True, "num_classes": 4, "cache_dir": str(cache)}
    )
    assert (
        report(capsys)
        == "initial weights timm's pretrained 'test_resnet' -> test_resnet: new head fc (1000 -> 4 classes)"
    )
    trunk = [k for k in source.state_dict() if not k.startswith("fc.")]
    assert all(torch.equal(model.state_dict()[k], source.state_dict()[k]) for k in trunk)


def test_an_hf_hub_model_loads_from_the_cache(tmp_path, capsys):
    import json

    from safetensors.torch import save
    from timm.models._hub import save_config_for_hf

    source = build_model({"name": "test_vit", "num_classes": 4, "img_size": 32})
    save_config_for_hf(source, str(tmp_path / "config.json"))
    files = {
        "config.json": (tmp_path / "config.json").read_bytes(),
        "model.safetensors": save(source.state_dict()),
    }
    cache = hub_cache(tmp_path / "cache", "someone/vit", files)
    model = build_model({"name": "hf-hub:someone/vit", "cache_dir": str(cache), "img_size": 64})
    assert report(capsys).endswith("test_vit: resampled pos_embed [1, 5, 64] -> [1, 17, 64]")
    assert model.num_classes == 4 and json.loads(files["config.json"])["architecture"] == "test_vit"


def test_pretrained_weights_not_in_the_cache_offline_are_one_line(tmp_path):
    with pytest.raises(RecipeError) as info:
        build_model({"name": "test_vit", "pretrained": True, "cache_dir": str(tmp_path)})
    assert info.value.key == "model.pretrained" and "HF_HUB_OFFLINE" in info.value.message
    assert "\n" not in str(info.value)


def test_meta_builds_load_no_weights(tmp_path, capsys):
    weights = save_weights(tmp_path / "w.safetensors", build_model({"name": "test_resnet"}))
    model = build_model({"name": "test_resnet", "weights": weights}, device="meta")
    assert next(model.parameters()).is_meta and capsys.readouterr().out == ""


def test_weights_and_pretrained_together_are_a_recipe_error():
    with pytest.raises(RecipeError) as info:
        validate_model_cfg({"name": "test_vit", "weights": "w.safetensors", "pretrained": True})
    assert info.value.key == "model.weights" and "model.pretrained" in info.value.message


def test_a_local_dir_without_config_json_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError) as info:
        validate_model_cfg({"name": f"local-dir:{tmp_path}"})
    assert info.value.key == "model.name" and "config.json" in info.value.message


def test_load_exact_names_the_keys_of_weights_that_do_not_fit(tmp_path):
    weights = save_weights(tmp_path / "vit.safetensors", build_model({"name": "test_vit"}))
    with pytest.raises(RecipeError) as info:
        load_exact(build_model({"name": "test_resnet"}), weights)
    assert "does not fit test_resnet: missing keys [conv1.0.weight" in info.value.message


def test_train_script_with_weights_of_another_architecture_is_one_line_exit_2(tmp_path):
    from runs import make_dataset, recipe_text, run

    weights = save_weights(
        tmp_path / "resnet.safetensors", build_model({"name": "test_resnet", "num_classes": 4})
    )
    model = f'name = "test_vit"\nnum_classes = 4\nimg_size = 16\npatch_size = 4\nweights = "{weights}"'
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(make_dataset(tmp_path / "data"), tmp_path / "out", model=model))
    proc = run(recipe, expect=2)
    assert (
        proc.stderr.count("\n") == 1
        and "model.weights: " in proc.stderr
        and "does not fit test_vit" in proc.stderr
    )
