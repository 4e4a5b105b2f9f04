#!/usr/bin/env bash
# Serve a model_dir from the container as a SageMaker endpoint does, on http://localhost:PORT.
#   scripts/docker_serve.sh MODEL_DIR [IMAGE] [PORT]
# MODEL_DIR is a trained model_dir (OPT_ML_DIR/model after docker_train.sh). Stop with Ctrl-C:
# the server drains the requests in flight and exits.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 MODEL_DIR [IMAGE] [PORT]" >&2
    exit 2
fi
model_dir="$(cd "$1" && pwd)"
image="${2:-convlab:latest}"
port="${3:-8080}"
docker run --rm --init -p "$port:8080" -v "$model_dir:/opt/ml/model:ro" "$image" serve
