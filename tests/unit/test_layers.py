"""The layers stay apart: the core library `cxr` never imports the orchestrator (kfp), the pipeline package
or the command line; every shell (components, pipelines, DVC stages via the CLI, web app) calls the core."""

import ast
import subprocess
import sys

from tests.conftest import PROJECT

SHELLS = ("kfp", "pipelines", "components", "cxr_cli")


def imported_modules(path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_core_module_imports_a_shell_anywhere_in_its_code():
    offenders = {
        str(path.relative_to(PROJECT)): sorted(m for m in imported_modules(path) if m.split(".")[0] in SHELLS)
        for path in (PROJECT / "cxr").rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_importing_every_core_module_loads_no_orchestrator():
    probe = (
        "import importlib, pkgutil, sys, cxr\n"
        "for m in pkgutil.walk_packages(cxr.__path__, 'cxr.'): importlib.import_module(m.name)\n"
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {SHELLS!r}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=PROJECT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
