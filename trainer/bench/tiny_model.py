"""`bench_tiny`: a timm-registered model with almost no compute, to measure a loop's own overhead."""

from __future__ import annotations

from typing import Any

OVERHEAD_MODEL = "bench_tiny"
"""A timm-registered model with almost no compute: a step's time is then the loop's own overhead."""


def register_overhead_model() -> None:
    """Register `bench_tiny` with timm (once): an 8x8 patch conv stem, a LayerNorm and a linear head."""
    import timm
    from timm.models import register_model
    from torch import nn

    if timm.is_model(OVERHEAD_MODEL):
        return

    class TinyNet(nn.Module):
        def __init__(self, num_classes: int, in_chans: int) -> None:
            super().__init__()
            self.num_classes = num_classes
            self.pretrained_cfg = {"classifier": "head", "first_conv": "stem"}
            self.stem = nn.Conv2d(in_chans, 16, kernel_size=8, stride=8)
            self.norm = nn.LayerNorm(16)
            self.head = nn.Linear(16, num_classes)

        def forward(self, x: Any) -> Any:
            return self.head(self.norm(self.stem(x).mean((2, 3))))

    def bench_tiny(
        pretrained: bool = False,
        pretrained_cfg: Any = None,
        pretrained_cfg_overlay: Any = None,
        cache_dir: Any = None,
        num_classes: int = 10,
        in_chans: int = 3,
    ) -> nn.Module:
        return TinyNet(num_classes, in_chans)

    bench_tiny.__module__ = __name__
    register_model(bench_tiny)
