"""README is the contract with a newcomer: CI runs its commands, its reference matches the schema."""

from __future__ import annotations

import re
from pathlib import Path

from trainer.reference import END, START, render_into

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def fenced_commands(section: str) -> list[str]:
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", body, re.S)


def test_ci_runs_exactly_the_readme_set_up_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    set_up, test = fenced_commands("Set up")[0], fenced_commands("Test")[0]
    assert f"{set_up} || exit 1" in ci
    assert f"\n{test}\n" in ci


def test_readme_recipe_reference_is_generated_from_the_current_schema():
    assert START in README and END in README
    assert render_into(README) == README, "run: python -m trainer.reference README.md"


def test_readme_main_command_trains_the_quickstart():
    assert "python scripts/launch.py scripts/train.py recipes/quickstart.toml" in fenced_commands("Train")[0]
    assert (ROOT / "recipes" / "quickstart.toml").is_file()
