#!/usr/bin/env bash
# Build convlab's image. Full image (both SageMaker programs, `train` and `serve`) by default;
# `--serve-only` builds the slim serving image (ONNX Runtime, no TensorFlow).
#   scripts/docker_build.sh [--serve-only] [IMAGE]
#       default IMAGE: convlab:latest, or convlab-serve:latest with --serve-only
# The base is python:3.11-slim when it can be pulled. When no registry answers (an offline or
# air-gapped machine), the base is built from Debian packages by scripts/docker_base.sh and passed
# as BASE_IMAGE. BASE_IMAGE in the environment chooses the base outright.
set -euo pipefail
target=full
if [ "${1:-}" = "--serve-only" ]; then
    target=serve
    shift
fi
if [ "$target" = serve ]; then image="${1:-convlab-serve:latest}"; else image="${1:-convlab:latest}"; fi
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
    echo "docker_build.sh: no Docker engine answers (is dockerd running? scripts/setup_machine.sh starts one as root)" >&2
    exit 1
fi
base="${BASE_IMAGE:-}"
if [ -z "$base" ]; then
    if docker image inspect python:3.11-slim >/dev/null 2>&1 || docker pull -q python:3.11-slim >/dev/null 2>&1; then
        base=python:3.11-slim
    else
        echo "python:3.11-slim cannot be pulled: building the offline base from Debian packages (scripts/docker_base.sh)"
        scripts/docker_base.sh convlab-base:bookworm
        base=convlab-base:bookworm
    fi
fi
echo "building $image (target $target) from $base"
# Host networking lets pip reach the package index the host reaches (proxies, mirrors).
docker build --network host --build-arg "BASE_IMAGE=$base" --target "$target" -t "$image" .
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
# A rebuild leaves the image it replaced untagged (about 2 GB for the full one): say how to remove them.
stale="$(docker images -q --filter dangling=true --filter label=org.convlab.image | wc -l)"
if [ "$stale" -gt 0 ]; then
    echo "$stale untagged convlab image(s) from earlier builds: docker image prune -f --filter label=org.convlab.image removes them"
fi
