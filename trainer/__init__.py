"""trainer: recipe-driven training of timm models with Hugging Face Accelerate."""

__version__ = "0.1.0"
