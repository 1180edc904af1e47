"""dvc.yaml lists, for every stage, exactly the project modules the stage executes (derived here from the
imports of the code its command runs) and its parameters key by key, so `dvc repro` reruns exactly what a
change touches."""

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT

OURS = ("cxr", "cxr_cli")
# modules that gather many entry points: only the functions a stage calls count, not the whole module
FUNCTION_LEVEL = {"cxr_cli.stages"}
STAGES = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]


def module_file(module: str) -> Path:
    path = PROJECT / (module.replace(".", "/") + ".py")
    return path if path.is_file() else PROJECT / module.replace(".", "/") / "__init__.py"


def is_module(module: str) -> bool:
    path = PROJECT / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@cache
def tree(module: str) -> ast.Module:
    return ast.parse(module_file(module).read_text())


def imports_in(nodes) -> dict[str, set[str]]:
    """Project modules imported anywhere under `nodes`, with the names taken from each
    ('from cxr.tracking import runs' counts as the module cxr.tracking.runs)."""
    found: dict[str, set[str]] = {}
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 and n.module.split(".")[0] in OURS:
                for a in n.names:
                    if is_module(f"{n.module}.{a.name}"):  # from a package import a module
                        found.setdefault(f"{n.module}.{a.name}", set())
                    else:
                        found.setdefault(n.module, set()).add(a.name)
            elif isinstance(n, ast.Import):
                for a in n.names:
                    if a.name.split(".")[0] in OURS:
                        found.setdefault(a.name, set())
    return found


def function_imports(module: str, name: str, seen: set | None = None) -> dict[str, set[str]]:
    """Imports of one function and of the same module's functions it calls."""
    seen = set() if seen is None else seen
    functions = {n.name: n for n in tree(module).body if isinstance(n, ast.FunctionDef)}
    if name in seen or name not in functions:
        return {}
    seen.add(name)
    found = imports_in([functions[name]])
    for call in ast.walk(functions[name]):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in functions:
            for module_name, names in function_imports(module, call.func.id, seen).items():
                found.setdefault(module_name, set()).update(names)
    return found


def executed_modules(stage: str) -> set[str]:
    """Files of the project modules `cxr stage <stage>` runs."""
    todo = [("cxr_cli.stages", {f"stage_{stage}"})]
    done: dict[str, set[str]] = {}
    while todo:
        module, names = todo.pop()
        if module in done and (module not in FUNCTION_LEVEL or names <= done[module]):
            continue
        done.setdefault(module, set()).update(names)
        header = [n for n in tree(module).body if isinstance(n, ast.Import | ast.ImportFrom)]
        if module in FUNCTION_LEVEL:
            deps = imports_in(header)
            for name in names:
                for dep, dep_names in function_imports(module, name).items():
                    deps.setdefault(dep, set()).update(dep_names)
        else:
            deps = imports_in([tree(module)])
        todo += list(deps.items())
    return {str(module_file(m).relative_to(PROJECT)) for m in done if module_file(m).name != "__init__.py"}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_depends_on_exactly_the_modules_it_executes(stage):
    listed = {d for d in STAGES[stage]["deps"] if d.endswith(".py")}
    assert listed == executed_modules(stage)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_lists_its_parameters_key_by_key(stage):
    for param in STAGES[stage].get("params", []):
        assert "." in param, f"{stage} depends on the whole '{param}' section; list the keys it reads"


def test_the_train_stage_depends_on_every_training_and_augmentation_setting():
    """A new train.* or augment.* key that dvc.yaml forgets would leave `dvc repro` serving a stale model."""
    from dataclasses import fields

    from cxr.params import AugmentParams, TrainParams

    listed = set(STAGES["train"]["params"])
    expected = {f"train.{f.name}" for f in fields(TrainParams)} | {f"augment.{f.name}" for f in fields(AugmentParams)}
    expected -= {"augment.preview_images"}  # the augment stage's previews; training never reads it
    assert expected - listed == set()
    assert "ingest.seed" in listed  # the cross-validation folds are drawn with it
