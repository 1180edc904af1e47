#!/usr/bin/env bash
# Make a local Debian bookworm + Python 3.11 base image for machines that cannot pull from a registry.
#   bash infra/docker/base-image.sh [IMAGE]        (default IMAGE: cxr-base:bookworm; needs root, debootstrap)
# The images' Dockerfiles take it with --build-arg BASE_IMAGE=IMAGE (`make images` does so when the
# public python:3.11-slim is not present). The Debian mirror comes from this machine's apt sources.
set -euo pipefail
image="${1:-cxr-base:bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image already present"; exit 0
fi
mirror="${DEBIAN_MIRROR:-$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^ ]+' | head -1 || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror ..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$image" >/dev/null
echo "built $image"
