"""The layout's rules, checked on the source: the core grouped by concern, no import cycle, no function
over 60 lines (benches aside; the generated components' length is their parameters' docstrings), imports
at module level in the core."""

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT

PACKAGES = ("cxr", "cxr_cli", "components", "pipelines")
MAX_TOP_LEVEL_MODULES = 10
MAX_FUNCTION_LINES = 60
LENGTH_CHECKED = (*PACKAGES, "tests", "tools", "infra")
GENERATED = ("components/kfp_steps.py",)


def sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (PROJECT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in it (inside functions too): `from a.b import c`
    counts as a.b.c when that is a module, else as a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sources(*PACKAGES)
    known = {module_name(p) for p in paths}
    # a package's __init__ is imported by each of its modules' imports; it imports nothing of them here
    return {module_name(p): imported_modules(p, known) - {module_name(p)} for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_core_is_grouped_by_concern():
    top = sorted(p.name for p in (PROJECT / "cxr").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    for package in ("data", "model", "evaluation", "safety", "inference", "release", "tracking", "steps"):
        assert (PROJECT / "cxr" / package / "__init__.py").is_file(), package


def test_no_import_cycle_among_the_projects_modules():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", LENGTH_CHECKED)
def test_no_function_over_60_lines(package):
    long = [
        f"{path.relative_to(PROJECT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sources(package)
        if str(path.relative_to(PROJECT)) not in GENERATED and ".venv" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_core_imports_at_module_level():
    """Inside a function only where a comment on the import says why (a measured cost, an optional
    dependency)."""
    inside = []
    for path in sources("cxr"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom) and "#" not in lines[inner.lineno - 1]:
                        inside.append(f"{path.relative_to(PROJECT)}:{inner.lineno}")
    assert inside == []


def test_the_schemas_show_every_metric_of_the_registry():
    """One home per metric: the card and the run result show what the registry lists, so a new metric
    that lacks its place in a schema fails here, not in a user's validator."""
    import json

    from cxr.evaluation.metrics import CARD_METRICS, METRICS
    from cxr.release.card import SCHEMA_PATH as CARD_SCHEMA
    from cxr_cli.result import SCHEMA_PATH as RESULT_SCHEMA

    card_split = json.loads(CARD_SCHEMA.read_text())["$defs"]["split"]["properties"]
    result_split = json.loads(RESULT_SCHEMA.read_text())["$defs"]["split"]["properties"]
    assert set(CARD_METRICS) <= set(card_split)
    assert set(METRICS) <= set(result_split)
