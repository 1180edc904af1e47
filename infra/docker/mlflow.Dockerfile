# The team's MLflow tracking server: PostgreSQL backend store, artifacts in S3 served through the server.
# Build from the repository root: docker build -f infra/docker/mlflow.Dockerfile -t REGISTRY/cxr-mlflow:TAG .
# BASE_IMAGE, CA_BUNDLE: see components.Dockerfile.
ARG BASE_IMAGE=python:3.11-slim
# checkov:skip=CKV_DOCKER_7: BASE_IMAGE is pinned by infra/docker/build-images.sh (python:3.11-slim or the local debootstrap image)
FROM ${BASE_IMAGE}
ARG CA_BUNDLE=""
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH HOME=/tmp MLFLOW_HOST=0.0.0.0 MLFLOW_PORT=5000
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY requirements.lock ${CA_BUNDLE} /tmp/build/
# only the server's packages, at the versions the project's lock pins
RUN if [ -n "${CA_BUNDLE}" ]; then export PIP_CERT="/tmp/build/${CA_BUNDLE##*/}"; fi \
    && python3 -m venv /opt/venv \
    && pip install --quiet -c /tmp/build/requirements.lock "mlflow[auth]" psycopg2-binary boto3 setuptools==80.9.0 \
    && rm -rf /tmp/build
# the cxr-auth server app (sign-in; @champion for release managers), without the project's dependencies
COPY pyproject.toml /tmp/src/
COPY cxr/ /tmp/src/cxr/
RUN pip install --quiet --no-deps --no-build-isolation /tmp/src && rm -rf /tmp/src
WORKDIR /app
COPY mlflow/server.sh ./server.sh
# the sign-in app's user store where no database URL is given (the compose stack's volume mounts here)
RUN mkdir -p /var/lib/mlflow-auth && chown 10001:10001 /var/lib/mlflow-auth
USER 10001:10001
EXPOSE 5000
HEALTHCHECK CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health')"]
CMD ["bash", "/app/server.sh"]
