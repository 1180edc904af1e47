"""dvc.yaml lists, for every stage, its parameters key by key and its code version (code_versions.yaml), and no
source file: a refactor that changes no output leaves `dvc status` clean. The project modules each stage
runs are derived here from the imports of the code its command runs (`python -m tests.unit.test_dvc_stages
STAGE` prints them): what a change to one of them must consider raising the stage's code version for."""

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


CODE_VERSIONS = "code_versions.yaml"


def code_versions() -> dict[str, int]:
    return yaml.safe_load((PROJECT / CODE_VERSIONS).read_text())


def test_every_stage_and_only_the_stages_have_a_code_version():
    assert set(code_versions()) == set(STAGES)
    assert all(isinstance(v, int) and v >= 1 for v in code_versions().values())


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_depends_on_its_code_version_and_on_no_source_file(stage):
    assert {CODE_VERSIONS: [stage]} in STAGES[stage]["params"]
    assert [d for d in STAGES[stage]["deps"] if d.endswith(".py")] == []


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_runs_its_own_step_and_the_library_only(stage):
    """The derivation the code version stands for finds the stage's step module, and no front-end beyond
    the stage runner and its options (the web app and the MLflow plug-in never shape a stage's output)."""
    modules = executed_modules(stage)
    assert f"cxr/steps/{stage}.py" in modules
    assert not {m for m in modules if m.startswith(("cxr/serving/", "cxr/mlflow_auth/", "pipelines/"))}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_lists_its_parameters_key_by_key(stage):
    for param in STAGES[stage].get("params", []):
        if isinstance(param, dict):  # another file's keys: the code version
            continue
        assert "." in param, f"{stage} depends on the whole '{param}' section; list the keys it reads"


def test_the_train_stage_depends_on_every_training_and_augmentation_setting():
    """A new train.* or augment.* key that dvc.yaml forgets would leave `dvc repro` serving a stale model."""
    from dataclasses import fields

    from cxr.params import AugmentParams, TrainParams

    listed = {p for p in STAGES["train"]["params"] if isinstance(p, str)}
    expected = {f"train.{f.name}" for f in fields(TrainParams)} | {f"augment.{f.name}" for f in fields(AugmentParams)}
    expected -= {"augment.preview_images"}  # the augment stage's previews; training never reads it
    assert expected - listed == set()
    assert "ingest.seed" in listed  # the cross-validation folds are drawn with it


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or sorted(STAGES):
        print(f"{name}:", *sorted(executed_modules(name)), sep="\n  ")
