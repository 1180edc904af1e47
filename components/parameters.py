"""The pipeline's typed run parameters, generated from the params dataclasses (`cxr/params.py`), and the
decorator that gives each component exactly the ones it uses.

Every field of the sections below is one pipeline input named `<stage>_<key>` (`train_learning_rate`),
typed from its field (int, float, bool, str; tuples as list, mappings as dict), with params.yaml's
effective value (profile and `--set` applied) as its default. A field added to a dataclass becomes a
pipeline input by itself: there is no second list to keep in step.

`typed_component(uses=...)` turns a step function that takes `params: Params` into a kfp component whose
inputs are the typed parameters in `uses` (whole sections, `stage.key` entries, or `profile`): the
component's source, which kfp ships into the container and whose signature the executor reads, is
generated with those inputs, and its first statement rebuilds `params` from them (`cxr.params.from_flat`,
which checks each value against its field). A step's cache key therefore changes only when a parameter
it reads changes.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import linecache
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfp import dsl

from cxr.params import CHOICES, Params, section_fields

# Sections whose fields are run parameters; serve and cluster say where things run, not what is trained.
SECTIONS = ("ingest", "validate", "augment", "train", "lungs", "evaluate", "ood", "scope", "gate", "register", "mlflow")
# Fields the pipeline takes as inputs of their own (where the data and the tracking server are).
NOT_PARAMETERS = ("ingest.data_dir", "mlflow.tracking_uri")
PROFILE = "profile"
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "tuple": list, "dict": dict}


@dataclass(frozen=True)
class PipelineParameter:
    name: str  # the pipeline input: train_learning_rate
    dotted: str  # the params.yaml key: train.learning_rate
    annotation: type

    @property
    def description(self) -> str:
        text = f"params.yaml {self.dotted} ({self.annotation.__name__})."
        allowed = CHOICES.get(tuple(self.dotted.split(".", 1)))
        return text + (f" One of: {', '.join(allowed)}." if allowed else "")

    def value(self, params: Params) -> Any:
        section, key = self.dotted.split(".", 1)
        value = getattr(getattr(params, section), key)
        return list(value) if isinstance(value, tuple) else value


def pipeline_parameters() -> list[PipelineParameter]:
    """Every typed run parameter, section by section in declaration order."""
    return [
        PipelineParameter(f"{stage}_{f.name}", f"{stage}.{f.name}", _TYPES[f.type])
        for stage in SECTIONS
        for f in section_fields(stage)
        if f"{stage}.{f.name}" not in NOT_PARAMETERS
    ]


def parameter_values(params: Params) -> dict[str, Any]:
    """Pipeline input -> value, for the pipeline's defaults and a local run's arguments."""
    return {p.name: p.value(params) for p in pipeline_parameters()} | {PROFILE: params.profile}


def used(uses: tuple[str, ...]) -> list[PipelineParameter]:
    """The parameters named by `uses` (sections or stage.key), in the pipeline's order."""
    known = pipeline_parameters()
    for entry in uses:
        if entry != PROFILE and not any(p.dotted == entry or p.dotted.startswith(entry + ".") for p in known):
            raise ValueError(f"'{entry}' names no pipeline parameter")
    return [p for p in known if p.dotted in uses or p.dotted.split(".")[0] in uses]


def _docstring(doc: str, extra: list[tuple[str, str]]) -> str:
    """`doc` with `extra` (name, description) appended to its Args section (before Returns)."""
    doc = inspect.cleandoc(doc)
    head, sep, tail = doc.partition("\n\nReturns:")
    lines = "".join(f"\n    {name}: {text}" for name, text in extra)
    return head + lines + sep + tail


def typed_component(uses: tuple[str, ...], base_image: str) -> Callable:
    """Decorator: `func(..., params: Params)` -> a kfp component taking the typed parameters in `uses`."""

    def wrap(func: Callable):
        chosen = used(uses)
        module = ast.parse(textwrap.dedent(inspect.getsource(func)))
        fn = module.body[0]
        fn.decorator_list = []
        fn.args.args = [a for a in fn.args.args if a.arg != "params"]
        inputs = [(p.name, p.annotation.__name__) for p in chosen]
        if PROFILE in uses:
            inputs.append((PROFILE, "str"))
        fn.args.args += [ast.arg(arg=name, annotation=ast.Name(kind)) for name, kind in inputs]
        mapping = ", ".join(f"{p.dotted!r}: {p.name}" for p in chosen)
        profile = PROFILE if PROFILE in uses else "'cpu'"
        prologue = ast.parse(f"from cxr.params import from_flat\nparams = from_flat({{{mapping}}}, {profile})").body
        docs = [(p.name, p.description) for p in chosen]
        if PROFILE in uses:
            docs.append((PROFILE, "The params.yaml profile the values came from (cpu, paper)."))
        fn.body[0] = ast.Expr(ast.Constant(_docstring(func.__doc__ or "", docs)))
        fn.body[1:1] = prologue
        text = ast.unparse(ast.fix_missing_locations(module)) + "\n"
        # kfp reads the component's source with inspect.getsource: the generated text is kept in linecache
        filename = f"<cxr component {fn.name} {next(_counter)}>"
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        namespace = dict(func.__globals__)
        exec(compile(text, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - source generated above
        generated = namespace[fn.name]
        generated.__module__ = func.__module__
        return dsl.component(base_image=base_image, install_kfp_package=False)(generated)

    return wrap


_counter = itertools.count()
