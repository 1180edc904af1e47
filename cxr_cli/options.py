"""Options shared by the `cxr` sub-commands."""

from __future__ import annotations

import typer

ParamsOpt = typer.Option(None, "--params", help="params.yaml to read (default: the project's).")
ProfileOpt = typer.Option("cpu", "--profile", help="cpu (default, minutes on 2 cores) or paper (GPU).")
SetOpt = typer.Option(None, "--set", help="Override a parameter: stage.key=value (repeatable).")
RecordsOpt = typer.Option(
    "", "--records-url", envvar="CXR_RECORDS_URL", help="The web app's records store (default serve.records_url)."
)


def load(params_file, profile, overrides):
    from cxr.params import load_params

    return load_params(params_file, profile, tuple(overrides or ()))


SiteOpt = typer.Option(
    "",
    "--site",
    envvar="CXR_SITE",
    help="The site films come from when their DICOM names no InstitutionName (default serve.site).",
)
ProtocolOpt = typer.Option(
    "web",
    "--protocol",
    help="web: the radiologists' web app; v2: MLServer, Open Inference Protocol v2 (REST on --port, gRPC on "
    "port+1, metrics on port+2).",
)
