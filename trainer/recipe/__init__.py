"""The recipe: its schema (the run's tables; each component owns its own), TOML loading with bases and
`--set` overrides, the checks that need each component, and the command-line parser the scripts share."""

from trainer.recipe.load import Recipe, check_sections, load_recipe, parse_override, validate

__all__ = ["Recipe", "check_sections", "load_recipe", "parse_override", "validate"]
