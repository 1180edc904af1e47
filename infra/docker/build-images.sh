#!/usr/bin/env bash
# Build the project's images with the names and tag in params.yaml `cluster` (what `cxr pipeline run
# --runner docker`, the compiled pipeline and infra/compose use).
#   bash infra/docker/build-images.sh cpu     components, web app, MLflow server (+ the stack's local images)
#   bash infra/docker/build-images.sh gpu     the GPU training image
#   bash infra/docker/build-images.sh push [REF...]   push the built images (default: the CPU ones, and the GPU
#       training image, built first if it is not, unless cluster.accelerator is empty; `docker login` first) and record each one's registry digest in build/image-digests.json
#       ($CXR_IMAGE_DIGESTS), which `cxr pipeline compile/submit` then pin (pipelines/image_digests.py)
# BASE_IMAGE: the public python:3.11-slim when present or pullable; otherwise a local Debian base made
# by base-image.sh. CA_BUNDLE: the CA bundle pip trusts here ($PIP_CERT or pip config's `cert`), copied into
# the build context so pip inside the build trusts the same proxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
what="${1:-cpu}"
py="${PYTHON:-.venv/bin/python}"
read -r registry tag accelerator < <("$py" -c 'from cxr.params import load_params; c = load_params().cluster; print(c.image_registry.rstrip("/"), c.image_tag, c.accelerator or "-")')
registry="${CXR_IMAGE_REGISTRY:-$registry}"  # another registry than cluster.image_registry (CI's, from a secret)
registry="${registry%/}"

if [ "$what" = push ]; then
  shift
  refs=("$@")
  if [ ${#refs[@]} -eq 0 ]; then
    refs=("$registry/cxr-python-components:$tag" "$registry/cxr-webapp:$tag" "$registry/cxr-mlflow:$tag")
    if [ "$accelerator" != - ]; then  # the compiled pipeline trains in the GPU image: built and pinned with the rest
      docker image inspect "$registry/cxr-python-train-gpu:$tag" >/dev/null 2>&1 || bash "$0" gpu
      refs+=("$registry/cxr-python-train-gpu:$tag")
    fi
  fi
  out="${CXR_IMAGE_DIGESTS:-build/image-digests.json}"
  mkdir -p "$(dirname "$out")"
  for ref in "${refs[@]}"; do
    docker push "$ref" >/dev/null
    repo="${ref%:*}"
    pinned="$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" | grep -m1 "^$repo@sha256:" || true)"
    if [ -z "$pinned" ]; then echo "the registry gave $ref no digest" >&2; exit 1; fi
    "$py" - "$out" "$ref" "$pinned" <<'PY'
import json, pathlib, sys
path, ref, pinned = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
digests = json.loads(path.read_text()) if path.is_file() else {}
digests[ref] = pinned
path.write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")
PY
    echo "pushed $pinned"
  done
  exit 0
fi

if [ -z "${BASE_IMAGE:-}" ]; then
  if docker image inspect python:3.11-slim >/dev/null 2>&1 || timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    BASE_IMAGE=python:3.11-slim
  else
    echo "python:3.11-slim cannot be pulled here: using a local Debian base (infra/docker/base-image.sh)"
    BASE_IMAGE=cxr-base:bookworm
    bash infra/docker/base-image.sh "$BASE_IMAGE"
  fi
fi
ca_args=()
cert="${CA_BUNDLE:-${PIP_CERT:-$( (python3 -m pip config list; "$py" -m pip config list) 2>/dev/null \
  | sed -nE "s/^[a-z:.]*cert='?([^']*)'?$/\1/p" | head -1 || true)}}"
if [ -n "$cert" ] && [ -f "$cert" ]; then
  mkdir -p build && cp "$cert" build/ca-bundle.crt
  ca_args=(--build-arg CA_BUNDLE=build/ca-bundle.crt)
fi

build() {  # dockerfile image
  local start=$SECONDS
  echo "building $2 ..."
  docker build --network host -q -f "infra/docker/$1" --build-arg BASE_IMAGE="$BASE_IMAGE" "${ca_args[@]}" -t "$2" . >/dev/null
  echo "built $2 in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$2" | awk '{printf "%.2f GB", $1/1e9}'))"
}

case "$what" in
  cpu)
    build components.Dockerfile "$registry/cxr-python-components:$tag"
    build webapp.Dockerfile "$registry/cxr-webapp:$tag"
    build mlflow.Dockerfile "$registry/cxr-mlflow:$tag"
    if [ "$BASE_IMAGE" != python:3.11-slim ]; then  # the stack's PostgreSQL and S3 where no registry can be reached
      build postgres.Dockerfile "cxr-postgres:$tag"
      build moto.Dockerfile "cxr-moto:$tag"
    fi
    ;;
  gpu)
    build train-gpu.Dockerfile "$registry/cxr-python-train-gpu:$tag"
    ;;
  *) echo "usage: $0 cpu|gpu|push [REF...]" >&2; exit 2 ;;
esac
