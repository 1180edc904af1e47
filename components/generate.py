"""Writes components/kfp_steps.py, the kfp components, from the step bodies in components/sources.py.

A kfp component's signature is what Kubeflow shows and caches on, so each component takes exactly the
typed run parameters its step reads (`<stage>_<key>`, from `cxr/params.py`'s dataclasses) instead of a
`params` object. components/sources.py holds each step once, with `params: Params` and the parameters it
reads (`@step(uses=...)`); this script writes each out with those parameters in its signature, documented
in its docstring, and a first statement that rebuilds `params` from them (`cxr.params.from_flat`, which
checks each value against its field). The output is checked in, formatted by ruff, and
tests/unit/test_components.py fails when it is not what this script writes:

    .venv/bin/python -m components.generate
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

from components import sources
from components.parameters import PROFILE, PipelineParameter, used

TARGET = Path(__file__).with_name("kfp_steps.py")
HEADER = '''"""The pipeline's kfp v2 components, one per step: GENERATED from components/sources.py by
`python -m components.generate` (do not edit; tests/unit/test_components.py checks it is in step).

Each takes the typed run parameters its step reads (`train_learning_rate`, ...), rebuilds `params` from
them and runs the step's body from components/sources.py. kfp ships each function's source into its
container, so every import happens inside the function body.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.sources import CPU_IMAGE, GPU_IMAGE

__all__ = {names}
'''


def _docstring(doc: str, extra: list[tuple[str, str]]) -> str:
    """`doc` with `extra` (name, description) appended to its Args section (before Returns)."""
    doc = inspect.cleandoc(doc)
    head, sep, tail = doc.partition("\n\nReturns:")
    lines = "".join(f"\n    {name}: {text}" for name, text in extra)
    return head + lines + sep + tail


def component_source(func) -> str:
    """One component's source: `func` with `params` replaced by the typed parameters it uses."""
    spec = func.__kfp__
    module = ast.parse(textwrap.dedent(inspect.getsource(func)))
    fn = module.body[0]
    image = "GPU_IMAGE" if spec["image"] == sources.GPU_IMAGE else "CPU_IMAGE"
    fn.decorator_list = [ast.parse(f"dsl.component(base_image={image}, install_kfp_package=False)").body[0].value]
    takes_params = any(a.arg == "params" for a in fn.args.args)
    if takes_params:
        chosen: list[PipelineParameter] = used(spec["uses"])
        fn.args.args = [a for a in fn.args.args if a.arg != "params"]
        inputs = [(p.name, p.annotation.__name__, p.description) for p in chosen]
        if PROFILE in spec["uses"]:
            inputs.append((PROFILE, "str", "The params.yaml profile the values came from (cpu, paper)."))
        fn.args.args += [ast.arg(arg=name, annotation=ast.Name(kind)) for name, kind, _ in inputs]
        mapping = ", ".join(f"{p.dotted!r}: {p.name}" for p in chosen)
        profile = PROFILE if PROFILE in spec["uses"] else "'cpu'"
        prologue = ast.parse(f"from cxr.params import from_flat\nparams = from_flat({{{mapping}}}, {profile})").body
        fn.body[0] = ast.Expr(ast.Constant(_docstring(func.__doc__ or "", [(n, d) for n, _, d in inputs])))
        fn.body[1:1] = prologue
    return ast.unparse(ast.fix_missing_locations(module))


def generate() -> str:
    """The whole module's text, formatted as the repository's ruff settings format it."""
    steps = [f for _, f in inspect.getmembers(sources, inspect.isfunction) if hasattr(f, "__kfp__")]
    steps.sort(key=lambda f: f.__code__.co_firstlineno)
    text = HEADER.format(names=repr([f.__name__ for f in steps]).replace("'", '"'))
    text += "".join("\n\n" + component_source(f) + "\n" for f in steps)
    for command in (("check", "--fix", "--select", "I", "--quiet"), ("format",)):  # sorted imports, then layout
        text = _ruff(*command, "--stdin-filename", str(TARGET), "-", text=text)
    return text


def _ruff(*args: str, text: str) -> str:
    ruff = Path(sys.executable).with_name("ruff")
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([str(ruff), *args], input=text, capture_output=True, text=True, check=True, cwd=root).stdout


if __name__ == "__main__":
    TARGET.write_text(generate())
    print(f"wrote {TARGET}")
