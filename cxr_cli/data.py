"""`cxr data …`: the DVC-versioned dataset as the cluster sees it."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr.errors import CxrError
from cxr_cli.options import ParamsOpt, ProfileOpt
from cxr_cli.options import load as _load

data_app = typer.Typer(no_args_is_help=True, help="The DVC-versioned dataset on its remote.")


@data_app.command("check-remote")
def check_remote(
    remote: str = typer.Option(
        "", "--remote", help="DVC remote URL (default: cluster.dvc_remote, else .dvc/config's s3)."
    ),
    version: str = typer.Option("", "--version", help="DVC version (default: data.dvc's)."),
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
) -> None:
    """Check that a data version (data.dvc's) and every file in it are on the DVC remote the cluster's
    ingest fetches from, reading no image. S3 credentials and endpoint: AWS_* variables."""
    from cxr.data.versions import missing_on_remote, project_dvc_remote
    from cxr.tracking import runs as tracking

    remote = remote or _load(params_file, profile, ()).cluster.dvc_remote or project_dvc_remote()
    version = version or tracking.data_version()
    missing = missing_on_remote(remote, version)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise CxrError(
            f"Data version {version} is on {remote} but {len(missing)} of its files are not ({shown}); "
            "run `dvc push` to that remote."
        )
    print(f"data version {version}: listing and every file are on {remote}")
