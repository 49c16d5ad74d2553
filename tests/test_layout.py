"""The package's shape: `trainer/` stands alone (no imports from the checkout's benchmarks/ or scripts/), its
modules import each other without cycles, and no module imports from a layer above its own (imports inside
functions count too).

The layers, lowest first; a module may import modules of its own layer and of the layers below:

0  foundation   trainer (the package), trainer.errors, trainer.files, trainer.keys, trainer.values,
                trainer.registry, trainer.sections (strict recipe tables and their one-line errors)
1  components   trainer.schedule, trainer.optim, trainer.model: each owns its recipe table's schema and checks
2  data         trainer.data: sources, checks, pipelines, seeding, samplers, streaming, loaders (uses the
                model's input facts and the schedule's length units)
3  recipe       trainer.recipe: the whole recipe (the run's tables), TOML loading, bases, overrides, the
                checks each component offers, the scripts' command-line parser
4  outputs      trainer.outputs: what a run directory holds (config.json, model card, run_info.json, curves,
                Hub upload)
5  run          trainer.run: build, loop, checkpoints, logs, signals, non-finite guard, EMA, loss, evaluation
6  port         trainer.port: MMPretrain configs to recipes (checked by building them)
7  entry        trainer.reference: README's recipe reference, generated from every table's schema;
                trainer.launch: the launcher (scripts/launch.py), which imports no torch
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trainer"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}

LAYERS: list[tuple[str, ...]] = [
    (
        "trainer",
        "trainer.errors",
        "trainer.files",
        "trainer.keys",
        "trainer.values",
        "trainer.registry",
        "trainer.sections",
    ),
    ("trainer.schedule", "trainer.optim", "trainer.model"),
    ("trainer.data",),
    ("trainer.recipe",),
    ("trainer.outputs",),
    ("trainer.run",),
    ("trainer.port",),
    ("trainer.reference", "trainer.launch"),
]
"""Every unit (a top-level module or a sub-package), by layer: see the module docstring."""
MAX_TOP_LEVEL_MODULES = 12


def layer_of(module: str) -> int:
    """The layer of the unit `module` belongs to (the longest listed prefix wins)."""
    best, found = -1, None
    for number, units in enumerate(LAYERS):
        for unit in units:
            inside = module.startswith(unit + ".") and unit != "trainer"  # the package root alone
            if (module == unit or inside) and len(unit) > best:
                best, found = len(unit), number
    if found is None:
        raise AssertionError(f"{module} belongs to no layer: add its unit to LAYERS")
    return found


def imported_modules(name: str) -> set[str]:
    """Every module `name` imports, at top level or inside a function; `from pkg import sub` names the
    submodule where `sub` is one, else the package."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: {m for m in imported_modules(name) if m in MODULES and m != name} for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_modules_to_check():
    assert {
        "trainer.run.loop",
        "trainer.run.build",
        "trainer.optim.paramwise",
        "trainer.schedule.build",
    } <= set(MODULES)
    assert "trainer.run.build" in imported_modules("trainer.run.loop")


def test_every_module_belongs_to_a_layer():
    assert {name: layer_of(name) for name in MODULES}


def test_no_module_imports_from_a_layer_above_its_own():
    upward = {
        name: sorted(m for m in imports if layer_of(m) > layer_of(name))
        for name, imports in import_graph().items()
    }
    assert {k: v for k, v in upward.items() if v} == {}


def test_the_layer_rule_catches_an_upward_import():
    assert layer_of("trainer.data.loaders") < layer_of("trainer.run.loop")
    assert layer_of("trainer.errors") == 0 and layer_of("trainer.reference") == len(LAYERS) - 1
    with pytest.raises(AssertionError, match="belongs to no layer"):
        layer_of("trainer.new_module")


def test_at_most_twelve_modules_stay_at_the_top_of_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_trainer_imports_nothing_from_benchmarks_or_scripts():
    offenders = {
        name: sorted(m for m in imported_modules(name) if m.split(".")[0] in ("benchmarks", "scripts"))
        for name in MODULES
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_under_trainer_imports_a_module_that_imports_it_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_a_cycle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_readme_code_layout_names_every_package():
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## Code layout\n", 1)[1].split("\n## ", 1)[0]
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert [name for name in packages if f"`{name}/`" not in section] == []
