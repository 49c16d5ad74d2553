"""`[model]`: the timm model a recipe trains (the table's keys, typed and documented)."""

from __future__ import annotations

from pydantic import Field, model_validator

from trainer.sections import OpenSection


class ModelCfg(OpenSection):
    """`[model]` (open): `timm.create_model(name, **every other key)`."""

    name: str
    """timm model name, e.g. "vit_small_patch16_224" (any name in `timm.list_models()`, with a pretrained
    tag such as "resnet50.a1_in1k"), or a timm model folder: "hf-hub:user/repo" or "local-dir:runs/x" (a run
    directory is one)."""
    pretrained: bool | None = None
    """Start from timm's pretrained weights for `name` (`create_model(name, pretrained=True)`: from the
    Hugging Face cache, or downloaded); default: true for "hf-hub:" and "local-dir:" names, else false."""
    weights: str | None = None
    """Optional local `.safetensors` file of initial weights, loaded by timm as pretrained weights
    (`pretrained_cfg_overlay=dict(file=...)`). As with `pretrained`: another num_classes gets a new head,
    another in_chans an adapted first conv, another img_size a resampled position embedding; anything else
    that does not fit is an error naming the keys."""
    channels_last: bool = False
    """Use channels-last memory format (faster convolutions on GPUs)."""
    compile: bool = False
    """Wrap the model in `torch.compile`."""
    num_classes: int | None = Field(None, ge=1)
    """Classifier outputs (timm's argument; default: the model's, 1000 for ImageNet models)."""
    in_chans: int | None = Field(None, ge=1)
    """Input image channels (timm's argument; default 3)."""
    drop_rate: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout before the classifier (timm's argument)."""
    drop_path_rate: float | None = Field(None, ge=0.0, lt=1.0)
    """Stochastic depth rate (timm's argument, where the model has one)."""

    @model_validator(mode="after")
    def _safetensors(self) -> ModelCfg:
        if self.weights is not None and not self.weights.endswith(".safetensors"):
            raise ValueError(f"weights: expected a local .safetensors file, got {self.weights!r}")
        if self.weights is not None and self.pretrained:
            raise ValueError(
                "weights: replaces the pretrained weights; set model.weights or model.pretrained"
            )
        return self
