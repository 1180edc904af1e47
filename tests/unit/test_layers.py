"""The layers written down in cxr/__init__.py hold: no module imports from a later layer, at module level or
inside a function; and the library, the components, the pipelines and the CLI stack in that order."""

import ast
from pathlib import Path

import pytest

from cxr import LAYERS, PROJECT_LAYERS
from tests.conftest import PROJECT


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def layer_of(module: str) -> str | None:
    """The cxr layer a dotted module name belongs to (`cxr.safety.drift` -> `safety`)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "cxr" and len(parts) > 1 else None


def upward(top: str, rank: dict[str, int], layer_of_file) -> list[str]:
    broken = []
    for path in sorted((PROJECT / top).rglob("*.py")):
        own = layer_of_file(path)
        for line, module in imported_modules(path):
            other = layer_of(module) if top == "cxr" else module.split(".")[0]
            if other in rank and own in rank and rank[other] > rank[own]:
                broken.append(f"{path.relative_to(PROJECT)}:{line} ({own}) imports {module} ({other})")
    return broken


def test_every_cxr_module_belongs_to_a_layer():
    modules = {p.stem for p in (PROJECT / "cxr").glob("*.py")} | {
        p.parent.name for p in (PROJECT / "cxr").glob("*/__init__.py")
    }
    modules.discard("__init__")
    assert modules - set(LAYERS) == set(), "add the new subpackage or module to cxr.LAYERS"


def test_no_cxr_module_imports_from_a_later_layer():
    rank = {name: i for i, name in enumerate(LAYERS)}

    def layer(path: Path) -> str:
        rel = path.relative_to(PROJECT / "cxr")
        return rel.parts[0] if len(rel.parts) > 1 else rel.stem

    assert upward("cxr", rank, layer) == []


@pytest.mark.parametrize("top", PROJECT_LAYERS)
def test_the_project_stacks_library_components_pipelines_cli(top):
    rank = {name: i for i, name in enumerate(PROJECT_LAYERS)}
    assert upward(top, rank, lambda path: top) == []


def test_each_subpackage_declares_its_public_modules_and_others_import_only_those():
    import importlib

    packages = [p.parent.name for p in (PROJECT / "cxr").glob("*/__init__.py")]
    public = {name: set(importlib.import_module(f"cxr.{name}").__all__) for name in packages}
    for name, names in public.items():
        modules = {p.stem for p in (PROJECT / "cxr" / name).glob("*.py")} - {"__init__"}
        assert names - {"train_model"} <= modules, f"cxr.{name}.__all__ names a module that does not exist"
    reaching_in = []
    for top in PROJECT_LAYERS:
        for path in sorted((PROJECT / top).rglob("*.py")):
            own = path.relative_to(PROJECT).parts[:2]
            for line, module in imported_modules(path):
                parts = module.split(".")
                if len(parts) >= 3 and parts[0] == "cxr" and parts[1] in public and own != ("cxr", parts[1]):
                    if parts[2] not in public[parts[1]]:
                        reaching_in.append(f"{path.relative_to(PROJECT)}:{line} imports {module}")
    assert reaching_in == []
