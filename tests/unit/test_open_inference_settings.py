"""What `cxr serve --protocol v2` hands MLServer (cxr/serving/open_inference.py): MLServer's MLflow runtime
on the model URI, its adaptive batching from serve.max_batch / serve.max_wait_ms, the ports, one process."""

import json
import subprocess

from cxr.params import load_params
from cxr.serving.open_inference import RUNTIME, write_settings
from tests.integration.conftest import CXR


def test_settings_files_name_the_runtime_batching_and_ports(tmp_path):
    serve = load_params().serve
    write_settings(tmp_path, "covid-xray-vgg16", "models:/covid-xray-vgg16/3", "127.0.0.1", 9100, serve)
    server = json.loads((tmp_path / "settings.json").read_text())
    model = json.loads((tmp_path / "covid-xray-vgg16" / "model-settings.json").read_text())
    assert (server["http_port"], server["grpc_port"], server["metrics_port"]) == (9100, 9101, 9102)
    assert server["parallel_workers"] == 0 and server["host"] == "127.0.0.1"
    assert model["implementation"] == RUNTIME == "mlserver_mlflow.MLflowRuntime"
    assert model["parameters"]["uri"] == "models:/covid-xray-vgg16/3"
    assert model["parameters"]["version"] == "3"  # named in every answer (model_version)
    assert model["max_batch_size"] == serve.max_batch and model["max_batch_time"] == serve.max_wait_ms / 1000
    write_settings(tmp_path, "covid-xray-vgg16", "models:/covid-xray-vgg16@champion", "127.0.0.1", 9100, serve)
    aliased = json.loads((tmp_path / "covid-xray-vgg16" / "model-settings.json").read_text())
    assert "version" not in aliased["parameters"]  # an alias names no version


def test_the_cli_refuses_a_sign_in_it_cannot_apply_in_one_sentence(tmp_path):
    done = subprocess.run(
        [CXR, "serve", "--protocol", "v2", "--htpasswd", str(tmp_path / "users")], capture_output=True, text=True
    )
    assert done.returncode == 2 and "MLServer has no sign-in of its own" in done.stderr
    assert "Traceback" not in done.stderr


def test_mlserver_starts_without_its_streaming_notice_and_keeps_every_other_record():
    import logging

    from cxr.serving.mlserver_start import not_the_streaming_notice
    from cxr.serving.open_inference import mlserver_command

    assert mlserver_command()[1:] == ["-m", "cxr.serving.mlserver_start"]

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("mlserver", logging.WARNING, __file__, 1, message, (), None)

    notice = "Adaptive Batching is enabled for model 'm' but not supported for inference streaming. Falling back."
    assert not not_the_streaming_notice(record(notice))
    assert not_the_streaming_notice(record("Model 'm' failed to load"))
    help_text = subprocess.run([*mlserver_command(), "--help"], capture_output=True, text=True, check=True).stdout
    assert "start" in help_text  # MLServer's own command line, unchanged
