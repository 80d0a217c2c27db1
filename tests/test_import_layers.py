"""The three layers of ``lrt_jax`` import only downward; a static check over every source file.

Layers (DESIGN.md §1), lowest first:

* **core** — ``model/``, ``loading/``, ``_run``/``_generate``/``_sweep``, ``interventions``,
  ``sites``, ``text``, ``parallel/``, ``config``, ``lm``, ``outputs``, ``results``,
  ``metrics``, ``tasks/``, ``positions``, ``_capture_texts``: every module of
  ``lrt_jax`` that is not named below.
* **methods** — ``mappers/``, ``steering/``, ``evaluation/``, ``knowledge/``, ``patching/``, ``lens``,
  ``organisms/`` except ``organisms.diagnostics``.
* **workflows** — ``lrt/``, ``organisms.diagnostics``, ``cli/``, ``experiments/``.

A module may import its own layer and the layers below it. Within the workflow layer
the packages are kept apart, with two deliberate exceptions: ``cli`` is the user-facing
front of everything, so it may import ``lrt`` and ``organisms.diagnostics``; the
``experiments`` scripts may import ``lrt`` and ``organisms.diagnostics`` (the library
API) but never ``cli`` — what a script needs from a subcommand belongs in ``lrt`` or
lower. ``lrt`` and ``organisms.diagnostics`` import no other workflow package.

Every ``import`` is checked, at module level and inside functions (a lazy import is
still a dependency). ``lrt_jax/__init__.py`` is exempt: it re-exports the public API of
every layer. Importing a name from the package root (``from lrt_jax import capture``) or
using one through it (``lrt_jax.steering.diff_of_means``) counts as importing the module
that name comes from.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("mappers", "steering", "evaluation", "knowledge", "organisms", "patching", "lens")
WORKFLOW_EXCEPTIONS = {"organisms.diagnostics"}  # a workflow module inside a methods package
ALLOWED_WORKFLOW_IMPORTS = {"cli": {"lrt", "organisms.diagnostics"},
                            "experiments": {"lrt", "organisms.diagnostics"}}
WORKFLOWS = ("lrt", "cli", "experiments")
LAYER_NAMES = ("core", "methods", "workflows")


def unit_of(module: str) -> str:
    """The package a module belongs to for layering: ``"sites"``, ``"steering"``, ``"organisms.diagnostics"``…"""
    parts = module.split(".")
    if parts[0] == "experiments":
        return "experiments"
    dotted = ".".join(parts[1:3])
    for exception in WORKFLOW_EXCEPTIONS:
        if dotted == exception or dotted.startswith(exception + "."):
            return exception
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> int:
    """0 core, 1 methods, 2 workflows."""
    unit = unit_of(module)
    if unit in WORKFLOWS or unit in WORKFLOW_EXCEPTIONS:
        return 2
    return 1 if unit in METHODS else 0


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__init__.py").exists()


def is_module(module: str) -> bool:
    return is_package(module) or (ROOT / Path(*module.split("."))).with_suffix(".py").exists()


def root_exports(source: str) -> dict[str, str]:
    """``{name: module}`` for every name ``lrt_jax/__init__.py`` imports from a submodule."""
    exports = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                exports[alias.asname or alias.name] = node.module
    return exports


def resolve(name: str, exports: dict[str, str]) -> str:
    """The module behind ``lrt_jax.<...>``: a submodule, or the source of a root re-export."""
    parts = name.split(".")
    if len(parts) >= 2 and not is_module(".".join(parts[:2])) and parts[1] in exports:
        return resolve(".".join([exports[parts[1]], *parts[2:]]), exports)
    while len(parts) > 1 and not is_module(".".join(parts)):
        parts.pop()
    return ".".join(parts)


def imported_modules(module: str, source: str, exports: dict[str, str]) -> list[tuple[int, str]]:
    """``(line, module)`` for every ``lrt_jax`` module that ``source`` imports or uses through a root alias."""
    found, root_aliases = [], set()
    package = module if is_package(module) else module.rpartition(".")[0]
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lrt_jax":
                    if alias.asname is None or alias.name == "lrt_jax":
                        root_aliases.add(alias.asname or "lrt_jax")
                    found.append((node.lineno, resolve(alias.name, exports)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "lrt_jax":
                continue
            for alias in node.names:
                found.append((node.lineno, resolve(f"{base}.{alias.name}", exports)))
    for node in ast.walk(tree):  # lrt_jax.steering.diff_of_means through `import lrt_jax`
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in root_aliases:
            found.append((node.lineno, resolve(f"lrt_jax.{node.attr}", exports)))
    return [(line, target) for line, target in found if target != "lrt_jax"]


def violations(module: str, source: str, exports: dict[str, str]) -> list[str]:
    """Messages for every import of ``module`` that goes up a layer or across workflow packages."""
    problems = []
    unit, layer = unit_of(module), layer_of(module)
    for line, target in imported_modules(module, source, exports):
        target_unit, target_layer = unit_of(target), layer_of(target)
        if target_layer > layer:
            problems.append(f"{module}:{line} ({LAYER_NAMES[layer]}) imports {target} ({LAYER_NAMES[target_layer]})")
        elif layer == 2 and target_layer == 2 and target_unit != unit \
                and target_unit not in ALLOWED_WORKFLOW_IMPORTS.get(unit, ()):
            problems.append(f"{module}:{line} (workflow {unit}) imports workflow package {target_unit} ({target})")
    return problems


def source_files() -> list[Path]:
    files = sorted((ROOT / "lrt_jax").rglob("*.py")) + sorted((ROOT / "experiments").rglob("*.py"))
    return [path for path in files if path != ROOT / "lrt_jax" / "__init__.py"]


@pytest.fixture(scope="module")
def exports():
    return root_exports((ROOT / "lrt_jax" / "__init__.py").read_text())


def test_no_module_imports_a_higher_layer_or_another_workflow(exports):
    problems = [problem for path in source_files()
                for problem in violations(module_name(path), path.read_text(), exports)]
    assert not problems, "imports against the layering (see this test's docstring):\n" + "\n".join(problems)


def test_the_checker_sees_every_source_file():
    modules = {module_name(path) for path in source_files()}
    assert {"lrt_jax.sites", "lrt_jax.steering._positions", "lrt_jax.cli.steer", "experiments.lrt_transfer"} <= modules


@pytest.mark.parametrize("module, source, expected", [
    ("lrt_jax.sites", "from lrt_jax.steering import diff_of_means", "lrt_jax.steering"),
    ("lrt_jax.sites", "def f():\n    from lrt_jax import steering", "lrt_jax.steering"),
    ("lrt_jax.text", "import lrt_jax\nv = lrt_jax.diff_of_means", None),  # not a root name: nothing resolved
    ("lrt_jax.text", "import lrt_jax\nv = lrt_jax.steering.diff_of_means(a, b)", "lrt_jax.steering"),
    ("lrt_jax.steering._vector", "from ..lrt import activations", "lrt_jax.lrt.activations"),
    ("lrt_jax.organisms.probes", "from lrt_jax.organisms.diagnostics import measure_attribute_signal",
     "lrt_jax.organisms.diagnostics"),
    ("lrt_jax.organisms.diagnostics", "from lrt_jax.lrt import reduced_activations", "lrt_jax.lrt"),
    ("lrt_jax.lrt.steer", "from lrt_jax.cli.steer import run", "lrt_jax.cli.steer"),
    ("experiments.lrt_transfer", "from lrt_jax.cli.demo import demo_config", "lrt_jax.cli.demo"),
])
def test_the_checker_flags_a_synthetic_upward_or_cross_import(exports, module, source, expected):
    found = violations(module, source, exports)
    if expected is None:
        assert not found
    else:
        assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize("module, source", [
    ("lrt_jax.steering._vector", "from lrt_jax import capture, sites\nimport lrt_jax.text"),
    ("lrt_jax.cli.steer", "from lrt_jax.lrt import reduced_activations\nfrom lrt_jax.organisms import diagnostics"),
    ("experiments.lrt_transfer", "import lrt_jax\nx = lrt_jax.lrt.run_lrt_experiment"),
    ("lrt_jax.organisms.diagnostics", "from lrt_jax import steering, organisms"),
])
def test_the_checker_allows_downward_and_documented_imports(exports, module, source):
    assert violations(module, source, exports) == []
