#!/usr/bin/env bash
# Install (if missing) and start a Docker engine from Debian's packages, with docker-compose, debootstrap
# and Debian's image registry (the push/pull-by-digest test runs one on loopback), make the local base
# image, and map the team stack's service names to loopback.
# Used by .ci/run (as root); run it once by hand as root for the container tests locally.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-registry >/dev/null || missing+=(docker-registry)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
# the engine is this throw-away machine's alone: let the (possibly non-root) test user reach it
if [ -n "${SUDO_USER:-}" ]; then chmod 666 /var/run/docker.sock; fi
# a base image where none can be pulled (debootstrap needs root, so it is made here)
docker image inspect python:3.11-slim >/dev/null 2>&1 || bash infra/docker/base-image.sh cxr-base:bookworm
grep -qE '^127\.0\.0\.1.*\bmlflow\b' /etc/hosts || echo "127.0.0.1 postgres s3 mlflow webapp  # cxr team stack" >> /etc/hosts
echo "docker $(docker version -f '{{.Server.Version}}') ready"
