# The team stack's S3 store where MinIO's image cannot be pulled: moto's S3 server, objects kept on /data.
# Build from the repository root: docker build -f infra/docker/moto.Dockerfile -t cxr-moto:TAG .
ARG BASE_IMAGE=python:3.11-slim
# checkov:skip=CKV_DOCKER_7: BASE_IMAGE is pinned by infra/docker/build-images.sh (python:3.11-slim or the local debootstrap image)
FROM ${BASE_IMAGE}
ARG CA_BUNDLE=""
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH HOME=/tmp
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY requirements.lock ${CA_BUNDLE} /tmp/build/
RUN if [ -n "${CA_BUNDLE}" ]; then export PIP_CERT="/tmp/build/${CA_BUNDLE##*/}"; fi \
    && python3 -m venv /opt/venv \
    && pip install --quiet -c /tmp/build/requirements.lock "moto[server]" boto3 \
    && rm -rf /tmp/build \
    && mkdir -p /data && chown 10001:10001 /data
COPY infra/docker/moto_server.py /app/moto_server.py
USER 10001:10001
VOLUME /data
EXPOSE 9000
HEALTHCHECK CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/moto-api/')"]
CMD ["python3", "/app/moto_server.py"]
