# The team's MLflow tracking server: PostgreSQL backend store, artifacts in S3 served through the server.
# Build from the repository root: docker build -f infra/docker/mlflow.Dockerfile -t REGISTRY/cxr-mlflow:TAG .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 MLFLOW_HOST=0.0.0.0 MLFLOW_PORT=5000
RUN useradd --create-home --uid 10001 mlflow
WORKDIR /app
COPY requirements.lock ./
# only the server's packages, at the versions the project's lock pins
RUN pip install -c requirements.lock mlflow psycopg2-binary boto3
COPY mlflow/server.sh ./server.sh
USER mlflow
EXPOSE 5000
CMD ["bash", "/app/server.sh"]
