"""trainer/ema.py: timm's ModelEmaV3 under MMEngine's EMAHook rules, checked against EMAs computed by hand."""

from __future__ import annotations

import copy

import pytest
import timm
import torch

from trainer.run.ema import ModelEma


def train_steps(model: torch.nn.Module, ema: ModelEma, steps: int) -> list[dict[str, torch.Tensor]]:
    """`steps` real SGD steps of `model` on random images, the EMA updated after each; the weights seen."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    for step in range(1, steps + 1):
        images = torch.randn(4, 3, 32, 32, generator=generator)
        loss = model(images).logsumexp(-1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update(step)
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return seen


def by_hand(weights: list[dict[str, torch.Tensor]], momentum: float, interval: int, first: int) -> dict:
    """MMEngine's rule: copy until the first update from `first` on (which copies too), then every
    `interval`-th call ema += momentum * (w - ema); in between, buffers follow the model."""
    ema = None
    for step, w in enumerate(weights, start=1):
        calls = step - first
        if calls <= 0:
            ema = copy.deepcopy(w)
        elif calls % interval == 0:
            ema = {
                k: e + momentum * (w[k] - e) if e.is_floating_point() and k in PARAMS else w[k].clone()
                for k, e in ema.items()
            }
        else:
            ema = {k: (e if k in PARAMS else w[k].clone()) for k, e in ema.items()}
    return ema


PARAMS: set[str] = set()


@pytest.mark.parametrize(("interval", "begin"), [(1, 0), (2, 0), (1, 3), (3, 2)])
def test_ema_equals_a_hand_computed_ema_after_k_steps(interval, begin):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=5)  # BatchNorm: buffers are copied (MMEngine)
    PARAMS.clear()
    PARAMS.update(name for name, _ in model.named_parameters())
    ema = ModelEma(model, {"momentum": 0.1, "interval": interval, "warmup": False,
                           "warmup_gamma": 1.0, "warmup_power": 2 / 3}, begin_step=begin)  # fmt: skip
    weights = train_steps(model, ema, 7)
    expected = by_hand(weights, 0.1, interval, max(begin, 1))
    got = ema.module.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7, msg=key)
    assert not torch.equal(got["fc.weight"], weights[-1]["fc.weight"])  # an average, not a copy


def test_decay_averages_buffers_too_as_timm_does():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=5)
    ema = ModelEma(model, {"decay": 0.9, "interval": 1, "warmup": False, "warmup_gamma": 1.0,
                           "warmup_power": 2 / 3}, begin_step=0)  # fmt: skip
    weights = train_steps(model, ema, 3)
    key = next(k for k in weights[0] if k.endswith("running_mean"))
    expected = weights[0][key] + 0.1 * (weights[1][key] - weights[0][key])
    expected = expected + 0.1 * (weights[2][key] - expected)
    torch.testing.assert_close(ema.module.state_dict()[key], expected)


def test_warmup_follows_timms_decay_formula():
    torch.manual_seed(0)
    model = timm.create_model("test_vit", num_classes=5, img_size=32, patch_size=8)
    cfg = {"decay": 0.9999, "interval": 1, "warmup": True, "warmup_gamma": 1.0, "warmup_power": 0.75}
    ema = ModelEma(model, cfg, begin_step=0)
    weights = train_steps(model, ema, 3)
    e = weights[0]["head.weight"]
    for n, w in ((1, weights[1]), (2, weights[2])):
        decay = min(0.9999, 1 - (1 + n) ** -0.75)
        e = e + (1 - decay) * (w["head.weight"] - e)
    torch.testing.assert_close(ema.module.state_dict()["head.weight"], e)


def test_ema_weights_round_trip_through_safetensors(tmp_path):
    model = timm.create_model("test_vit", num_classes=5, img_size=32, patch_size=8)
    cfg = {"momentum": 0.5, "interval": 1, "warmup": False, "warmup_gamma": 1.0, "warmup_power": 2 / 3}
    ema = ModelEma(model, cfg, begin_step=0)
    train_steps(model, ema, 2)
    ema.save(tmp_path / "ema.safetensors")
    other = ModelEma(timm.create_model("test_vit", num_classes=5, img_size=32, patch_size=8), cfg, 0)
    other.load(tmp_path / "ema.safetensors")
    for (k, a), b in zip(ema.module.state_dict().items(), other.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
