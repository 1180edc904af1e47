# The team stack's PostgreSQL where the public postgres image cannot be pulled: Debian's PostgreSQL 15
# with the official image's environment contract (POSTGRES_USER/PASSWORD/DB, PGDATA on a volume).
# Build from the repository root: docker build -f infra/docker/postgres.Dockerfile -t cxr-postgres:TAG .
ARG BASE_IMAGE=debian:bookworm-slim
# checkov:skip=CKV_DOCKER_7: BASE_IMAGE is pinned by infra/docker/build-images.sh (python:3.11-slim or the local debootstrap image)
FROM ${BASE_IMAGE}
ENV PGDATA=/var/lib/postgresql/data
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# uid 10001 too: the cluster's pod runs as 10001 (infra/k8s/postgres.yaml), and initdb needs a passwd entry
RUN groupadd --system --gid 999 postgres && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql postgres \
    && groupadd --gid 10001 cxr && useradd --no-create-home --uid 10001 --gid 10001 --home-dir /var/lib/postgresql cxr \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15=15.* >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p "$PGDATA" && chown -R 999:999 /var/lib/postgresql && chmod 700 "$PGDATA"
COPY infra/docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER 999:999
VOLUME /var/lib/postgresql/data
EXPOSE 5432
HEALTHCHECK CMD ["pg_isready", "-h", "127.0.0.1"]
CMD ["bash", "/usr/local/bin/postgres-entrypoint.sh"]
