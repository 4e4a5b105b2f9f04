#!/usr/bin/env bash
# Serve a model_dir from the container as a SageMaker endpoint does.
#   scripts/docker_serve.sh MODEL_DIR [--image IMAGE] [--port PORT] [--host-network] [--name NAME]
# MODEL_DIR is a trained model_dir (OPT_ML_DIR/model after docker_train.sh, or an extracted
# model.tar.gz). By default the port is published on 127.0.0.1 only (http://127.0.0.1:PORT);
# --host-network shares the host's network instead (the server binds 0.0.0.0:PORT through
# SAGEMAKER_BIND_TO_PORT, as on SageMaker). Stop with Ctrl-C or `docker stop NAME`: the server
# drains the requests in flight and exits.
set -euo pipefail
usage="usage: $0 MODEL_DIR [--image IMAGE] [--port PORT] [--host-network] [--name NAME]"
if [ $# -lt 1 ]; then
    echo "$usage" >&2
    exit 2
fi
model_arg="$1"
shift
image=convlab:latest
port=8080
host_network=0
name=""
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --host-network) host_network=1; shift ;;
        --name) name="$2"; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
if [ ! -d "$model_arg" ]; then
    echo "docker_serve.sh: $model_arg is not a folder (expected a model_dir holding model.onnx or 1/saved_model.pb)" >&2
    exit 2
fi
if ! docker info >/dev/null 2>&1; then
    echo "docker_serve.sh: no Docker engine answers; serve without Docker: convlab serve --model-dir $model_arg" >&2
    exit 1
fi
model_dir="$(cd "$model_arg" && pwd)"
args=(--rm --init -e "SAGEMAKER_BIND_TO_PORT=$port" -v "$model_dir:/opt/ml/model:ro")
[ -n "$name" ] && args+=(--name "$name")
if [ "$host_network" = 1 ]; then
    args+=(--network host)
else
    args+=(-p "127.0.0.1:$port:$port")
fi
exec docker run "${args[@]}" "$image" serve
