"""`cxr pipeline …`: run the pipeline here (kfp's local runner), compile it, or submit it to a cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from cxr.errors import CxrError
from cxr_cli.options import ParamsOpt, ProfileOpt, SetOpt
from cxr_cli.options import load as _load

pipeline_app = typer.Typer(no_args_is_help=True, help="Run, compile or submit the Kubeflow pipeline.")

VerboseOpt = typer.Option(False, "--verbose", "-v", help="Stream every log line (kfp, TensorFlow, MLflow) as well.")
JsonOpt = typer.Option(
    False, "--json", help="Print one JSON object (run_result.schema.json) on stdout; progress goes to stderr."
)


def _log_path(run_name: str) -> Path:
    """.kfp/logs/<run>.log under the project, shown relative to the working folder where it is inside it."""
    from cxr.params import project_root

    path = project_root() / ".kfp" / "logs" / f"{run_name}.log"
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def _run_pipeline(
    params,
    data_dir: Path,
    uri: str,
    run_name: str,
    runner: str,
    gpu: bool,
    verbose: bool,
    out,
    cache: bool = True,
    pipeline_root: Path | None = None,
) -> dict:
    """Run locally; the terminal gets one line per step (everything else goes to the log file)."""
    import time

    from cxr_cli.progress import StepView, captured
    from cxr_cli.result import build_result
    from pipelines.local import new_run_name, run_local

    run_name = run_name or new_run_name()
    log_file = _log_path(run_name)
    started = time.monotonic()
    out.write(f"pipeline {run_name} ({runner} runner{', GPU' if gpu else ''}, profile {params.profile})\n")
    if verbose:
        outcome = run_local(params, data_dir, uri, run_name, pipeline_root, runner, gpu, cache)
        log_file = ""
    else:
        out.write(f"  log: {log_file}\n")
        view = StepView(out)
        with captured(log_file, view.feed):
            outcome = run_local(params, data_dir, uri, run_name, pipeline_root, runner, gpu, cache)
        outcome.failed_step = outcome.failed_step or view.failed_step
    orchestrator = "docker" if runner == "docker" else "local"
    return build_result(
        outcome, params, uri, str(log_file), orchestrator, duration_s=round(time.monotonic() - started, 1)
    )


def _finish(result: dict, out, as_json: bool) -> None:
    """Summary on the terminal, the JSON object on stdout with --json, and the contract's exit code."""
    from cxr_cli.result import EXIT_FAILED, dumps, render_text

    out.write("\n".join(render_text(result)) + "\n")
    out.flush()
    if as_json:
        print(dumps(result), flush=True)
    if result["exit_code"] == EXIT_FAILED:
        where = f" at step {result['failed_step']}" if result["failed_step"] else ""
        log = f" (full log: {result['log_file']})" if result["log_file"] else ""
        raise CxrError(f"The pipeline failed{where}: {result['error'] or 'see the log'}{log}")
    if result["exit_code"]:
        raise typer.Exit(result["exit_code"])


def _fail_json(exc: CxrError, uri: str, as_json: bool, **extra) -> None:
    if as_json:
        from cxr_cli.result import dumps, failure_result

        print(dumps(failure_result(str(exc), uri, **extra)), flush=True)


@pipeline_app.command("run")
def pipeline_run(
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    data: Path | None = typer.Option(None, "--data", help="Folder of class sub-folders (default: ingest.data_dir)."),
    overrides: list[str] | None = SetOpt,
    tracking_uri: str = typer.Option(
        "", "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or the local store under mlflow/)."
    ),
    run_name: str = typer.Option("", "--run-name", help="MLflow run name (default: pipeline-<time>-<id>)."),
    runner: str = typer.Option(
        "subprocess", "--runner", help="subprocess: steps as subprocesses; docker: steps in their images (make images)."
    ),
    gpu: bool = typer.Option(False, "--gpu", help="With --runner docker: train in the GPU image with the GPUs."),
    cache: bool = typer.Option(
        True,
        "--cache/--no-cache",
        help="Reuse ingest and validation from an earlier run on the same data, parameters, code.",
    ),
    pipeline_root: Path | None = typer.Option(
        None, "--pipeline-root", help="Where the steps' outputs go (default .kfp/outputs in the project)."
    ),
    verbose: bool = VerboseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run the whole pipeline locally (kfp local runner): one line per step, then the metrics, the gate's
    decision and the next commands. Exit 0 registered, 3 gate refused, 2 failed."""
    from cxr.params import project_root
    from cxr.tracking import runs as tracking
    from cxr_cli.progress import terminal

    params = _load(params_file, profile, overrides)
    uri = tracking.resolve_tracking_uri(params, tracking_uri)
    data_dir = data or (project_root() / params.ingest.data_dir)
    out = terminal(to_stderr=as_json)
    try:
        result = _run_pipeline(params, data_dir, uri, run_name, runner, gpu, verbose, out, cache, pipeline_root)
    except CxrError as exc:
        _fail_json(exc, uri, as_json, run_name=run_name)
        raise
    _finish(result, out, as_json)


def _cluster_params(params_file, profile: str, overrides, cluster: tuple[str, ...]):
    """Params with the command's `cluster.*` options (registry, tag, tracking URI, data dir, MLflow
    secret) as overrides."""
    keys = ("image_registry", "image_tag", "tracking_uri", "data_dir", "mlflow_secret")
    extra = [f"cluster.{k}={v}" for k, v in zip(keys, cluster, strict=True) if v]
    return _load(params_file, profile, list(overrides or []) + extra)


def _compile(output: Path, params_file, profile: str, overrides, cluster: tuple[str, ...]) -> Path:
    """A compiled package at `output`, with data.dvc's version and the commit as parameter defaults."""
    from cxr.tracking import runs as tracking
    from pipelines.compile import compile_pipeline

    params = _cluster_params(params_file, profile, overrides, cluster)
    return compile_pipeline(output, params, tracking.data_version(), tracking.git_commit())


RegistryOpt = typer.Option("", "--image-registry", help="Registry of the component images (cluster.image_registry).")
TagOpt = typer.Option("", "--image-tag", help="Tag of the component images (cluster.image_tag).")
ClusterUriOpt = typer.Option("", "--tracking-uri", help="MLflow server the cluster run logs to (cluster.tracking_uri).")
DataDirOpt = typer.Option(
    "", "--data-dir", help="Dataset path inside the component image or volume (cluster.data_dir)."
)
MlflowSecretOpt = typer.Option(
    "",
    "--mlflow-secret",
    help="Kubernetes secret (keys username, password) every task signs in to MLflow with (cluster.mlflow_secret).",
)


@pipeline_app.command("compile")
def pipeline_compile(
    output: Path = typer.Option(Path("build/covid_xray_pipeline.yaml"), "--output", help="Package file to write."),
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    image_registry: str = RegistryOpt,
    image_tag: str = TagOpt,
    tracking_uri: str = ClusterUriOpt,
    data_dir: str = DataDirOpt,
    mlflow_secret: str = MlflowSecretOpt,
) -> None:
    """Compile the pipeline to a Kubeflow Pipelines package (the training task asks for one NVIDIA GPU; none with
    --set cluster.accelerator= on a CPU-only cluster)."""
    cluster = (image_registry, image_tag, tracking_uri, data_dir, mlflow_secret)
    print(f"wrote {_compile(output, params_file, profile, overrides, cluster)}")


HostOpt = typer.Option(
    "", "--host", envvar="KFP_HOST", help="Kubeflow Pipelines API endpoint (default: $KFP_HOST). Token: $KFP_TOKEN."
)
NamespaceOpt = typer.Option("", "--namespace", help="Kubeflow profile namespace (multi-user installs).")
TimeoutOpt = typer.Option(6 * 3600, "--timeout", help="With --wait: seconds to wait before giving up (run left going).")
PollOpt = typer.Option(10.0, "--poll-interval", help="With --wait: seconds between state checks.")


def _submit_and_wait(
    params, host: str, experiment: str, namespace: str, wait_s: float | None, out, poll_s: float = 10.0
) -> dict:
    """Compile (data.dvc's version and the commit as parameters), submit, and with `wait_s` wait and read
    the outcome back from the Kubeflow run and from MLflow ($MLFLOW_TRACKING_URI: the server the cluster
    logs to, as this machine reaches it)."""
    import tempfile

    from cxr.tracking import runs as tracking
    from cxr_cli.progress import captured
    from cxr_cli.result import EXIT_FAILED, build_result, failure_result
    from pipelines import remote
    from pipelines.compile import compile_pipeline
    from pipelines.local import new_run_name, read_outcome

    experiment = experiment or params.mlflow.experiment
    versions = {"data_version": tracking.data_version(), "git_commit": tracking.git_commit()}
    run_name = new_run_name()
    log_file = _log_path(run_name)

    def show_links(line: str) -> None:  # kfp prints the experiment's and the run's UI links
        if line.startswith(("Experiment details:", "Run details:")):
            out.write(f"  {line.strip()}\n")

    # kfp's client logs retries with tracebacks and prints links: all of it to the log, links to the terminal
    with tempfile.TemporaryDirectory() as tmp, captured(log_file, show_links):
        client = _connected(host, namespace)
        package = compile_pipeline(Path(tmp) / "pipeline.yaml", params, **versions)
        run_id = remote.submit(client, host, package, experiment, run_name, versions)
        out.write(f"submitted {run_name} to {host} (experiment {experiment}) as Kubeflow run {run_id}\n")
        if wait_s is None:
            return {"kfp_run_id": run_id, "run_name": run_name, "experiment": experiment, "host": host, **versions}
        end = remote.wait(client, run_id, wait_s, on_change=lambda line: out.write(line + "\n"), poll_s=poll_s)
        read_uri = tracking.resolve_tracking_uri(params)
        extra = {"orchestrator": "kfp", "kfp_run_id": run_id, "kfp_state": end.state}
        try:
            outcome = read_outcome(read_uri, params.mlflow.experiment, run_name)
        except CxrError as exc:
            error = f"Kubeflow run {run_id} ended {end.state}: {end.error or exc}"
            return failure_result(error, read_uri, run_name, str(log_file), **extra)
    result = build_result(outcome, params, read_uri, str(log_file), **extra)
    if end.state == "TIMEOUT":
        result["exit_code"] = EXIT_FAILED
        result["error"] = f"Kubeflow run {run_id} timed out: {end.error}; it was left running (see the KFP UI)"
    elif end.state != "SUCCEEDED":
        result["exit_code"] = EXIT_FAILED
        result["error"] = f"Kubeflow run {run_id} ended {end.state}: {end.error or outcome.error or 'see the KFP UI'}"
    return result


@pipeline_app.command("submit")
def pipeline_submit(
    host: str = HostOpt,
    experiment: str = typer.Option("", "--experiment", help="KFP experiment name (default: mlflow.experiment)."),
    namespace: str = NamespaceOpt,
    wait: bool = typer.Option(False, "--wait", help="Wait for the run; finish like a local run (same exit codes)."),
    timeout: int = TimeoutOpt,
    poll_interval: float = PollOpt,
    as_json: bool = JsonOpt,
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    image_registry: str = RegistryOpt,
    image_tag: str = TagOpt,
    tracking_uri: str = ClusterUriOpt,
    data_dir: str = DataDirOpt,
    mlflow_secret: str = MlflowSecretOpt,
) -> None:
    """Compile and submit the pipeline to a Kubeflow Pipelines cluster. Without --wait prints the KFP run id;
    with --wait prints state changes, then the same summary and exit codes as `cxr pipeline run`."""
    from cxr_cli.progress import terminal

    cluster = (image_registry, image_tag, tracking_uri, data_dir, mlflow_secret)
    params = _cluster_params(params_file, profile, overrides, cluster)
    out = terminal(to_stderr=as_json or not wait)
    try:
        result = _submit_and_wait(params, host, experiment, namespace, timeout if wait else None, out, poll_interval)
    except CxrError as exc:
        _fail_json(exc, host, as_json and wait, orchestrator="kfp")
        raise
    if not wait:
        print(json.dumps(result))
        return
    _finish(result, out, as_json)


def _connected(host: str, namespace: str):
    from pipelines import remote

    if not host:
        raise CxrError("No Kubeflow Pipelines endpoint: pass --host URL or set $KFP_HOST.")
    return remote.connect(host, namespace or None)


def _quietly(call):
    """kfp's client prints its UI links and logs retries: keep them off stdout (which may carry --json)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return call()


NameOpt = typer.Option("", "--name", help="Pipeline name in the KFP catalogue (default: the package's name).")


@pipeline_app.command("upload")
def pipeline_upload(
    host: str = HostOpt,
    name: str = NameOpt,
    version: str = typer.Option("", "--version", help="Version name (default: the git commit)."),
    namespace: str = NamespaceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the pipeline and version ids as JSON."),
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    image_registry: str = RegistryOpt,
    image_tag: str = TagOpt,
    tracking_uri: str = ClusterUriOpt,
    data_dir: str = DataDirOpt,
    mlflow_secret: str = MlflowSecretOpt,
) -> None:
    """Compile and upload the pipeline as a new version of a named pipeline (created on first upload): the
    KFP UI's run form then offers its typed parameters, and `cxr pipeline schedule` can run it."""
    import tempfile

    from cxr.tracking import runs as tracking
    from pipelines import catalog
    from pipelines.kfp_pipeline import PIPELINE_NAME

    cluster = (image_registry, image_tag, tracking_uri, data_dir, mlflow_secret)
    name, version = name or PIPELINE_NAME, version or tracking.git_commit()
    with tempfile.TemporaryDirectory() as tmp:
        package = _compile(Path(tmp) / "pipeline.yaml", params_file, profile, overrides, cluster)
        client = _connected(host, namespace)
        description = f"Chest X-ray COVID-19 classifier; code {tracking.git_commit()}, data {tracking.data_version()}"
        made = _quietly(lambda: catalog.upload(client, host, package, name, version, description))
    result = {"host": host, "pipeline": name, **made.__dict__}
    if as_json:
        print(json.dumps(result))
        return
    first = "created pipeline and uploaded" if made.created_pipeline else "uploaded"
    print(f"{first} {name} version {version} to {host}")
    print(f"  {host.rstrip('/')}/#/pipelines/details/{made.pipeline_id}/version/{made.version_id}")


@pipeline_app.command("schedule")
def pipeline_schedule(
    cron: str = typer.Option(..., "--cron", help="When to run: 5-field cron (minute hour day month weekday)."),
    host: str = HostOpt,
    name: str = NameOpt,
    version: str = typer.Option("", "--version", help="Pipeline version to run (default: the newest uploaded)."),
    job_name: str = typer.Option("", "--job-name", help="Recurring run name (default: <pipeline>-schedule)."),
    experiment: str = typer.Option("", "--experiment", help="KFP experiment name (default: mlflow.experiment)."),
    namespace: str = NamespaceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the recurring run as JSON."),
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
) -> None:
    """Create, or replace, a recurring run of an uploaded pipeline version. Each run trains on the data
    version and parameters the version was compiled with (upload a new version when data lands)."""
    from pipelines import catalog
    from pipelines.kfp_pipeline import PIPELINE_NAME

    params = _load(params_file, profile, ())
    name = name or PIPELINE_NAME
    cron = catalog.cron_fields(cron)  # a bad expression fails before any connection
    client = _connected(host, namespace)
    made = _quietly(
        lambda: catalog.schedule(
            client,
            host,
            name,
            version,
            cron,
            experiment or params.mlflow.experiment,
            job_name or f"{name}-schedule",
            {"kfp_host": host},
        )
    )
    if as_json:
        print(json.dumps(made))
        return
    replaced = f" (replaced {len(made['replaced'])})" if made["replaced"] else ""
    print(f"scheduled {made['name']}: {name} version {made['version']} on '{made['cron']}'{replaced}")


@pipeline_app.command("runs")
def pipeline_runs(
    host: str = HostOpt,
    experiment: str = typer.Option("", "--experiment", help="KFP experiment name (default: mlflow.experiment)."),
    limit: int = typer.Option(10, "--limit", help="How many of the newest runs."),
    namespace: str = NamespaceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the runs as a JSON list."),
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
) -> None:
    """The newest Kubeflow runs with their state and the MLflow run each recorded (read from
    $MLFLOW_TRACKING_URI as this machine reaches it): gate outcome, registered version, link."""
    from cxr.tracking import runs as tracking
    from cxr.tracking.record import GateRecord, registered_version
    from pipelines import catalog

    params = _load(params_file, profile, ())
    client = _connected(host, namespace)
    rows = _quietly(lambda: catalog.recent_runs(client, host, experiment or params.mlflow.experiment, limit))
    uri = tracking.resolve_tracking_uri(params)
    try:
        recorded = tracking.runs_by_kfp_id(uri, params.mlflow.experiment, [r["kfp_run_id"] for r in rows])
    except Exception as exc:  # the KFP side still answers: say MLflow could not be read, list the runs
        print(f"(MLflow at {uri} could not be read: {exc.__class__.__name__}; links left out)", file=sys.stderr)
        recorded = {}
    ui = (params.cluster.mlflow_ui_url or uri).rstrip("/")
    for row in rows:
        run = recorded.get(row["kfp_run_id"])
        row["mlflow_run_id"] = run.info.run_id if run else ""
        row["mlflow_url"] = tracking.ui_url(ui, run.info.experiment_id, run.info.run_id) if run else ""
        row["gate"] = GateRecord.from_tags(run.data.tags).outcome if run else ""
        row["registered_version"] = registered_version(run.data.tags) if run else ""
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        print(f"no runs in experiment {experiment or params.mlflow.experiment} at {host}")
    for row in rows:
        gate = f"gate {row['gate']}" + (
            f", v{row['registered_version']}" if row["registered_version"] not in ("", "none") else ""
        )
        print(f"{row['created_at'][:19]:<19}  {row['state']:<9}  {row['name']}  {gate if row['gate'] else ''}")
        print(f"    kfp: {row['url']}")
        if row["mlflow_url"]:
            print(f"    mlflow: {row['mlflow_url']}")


@pipeline_app.command("summary")
def pipeline_summary(
    result_file: Path = typer.Argument(..., help="What `--json` printed (cxr pipeline run/submit, cxr retrain)."),
    fmt: str = typer.Option("markdown", "--format", help="markdown (a CI job summary) or text (the terminal's)."),
) -> None:
    """Render a run's JSON result: Markdown for $GITHUB_STEP_SUMMARY, or the terminal summary."""
    from cxr_cli.result import load_result, render_markdown, render_text

    try:
        result = load_result(result_file)
    except CxrError as exc:
        if fmt == "markdown":  # the job summary still says what happened
            print(f"## Retraining: no result\n\n{exc}\n")
        raise
    print(render_markdown(result) if fmt == "markdown" else "\n".join(render_text(result)))
