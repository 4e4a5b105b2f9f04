#!/usr/bin/env bash
# Build convlab's image: one image, two SageMaker programs (`train` and `serve`).
#   scripts/docker_build.sh [IMAGE]        (default image name: convlab:latest)
set -euo pipefail
image="${1:-convlab:latest}"
cd "$(dirname "$0")/.."
docker build -t "$image" .
echo "built $image"
