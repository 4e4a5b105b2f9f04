#!/usr/bin/env bash
# Train in the container exactly as SageMaker does, against a local /opt/ml tree.
#   scripts/docker_train.sh OPT_ML_DIR [IMAGE]
# OPT_ML_DIR holds input/config/hyperparameters.json and input/data/<channel>/...;
# the model_dir appears in OPT_ML_DIR/model, a failure reason in OPT_ML_DIR/output/failure.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 OPT_ML_DIR [IMAGE]" >&2
    exit 2
fi
opt_ml="$(cd "$1" && pwd)"
image="${2:-convlab:latest}"
mkdir -p "$opt_ml/model" "$opt_ml/output"
docker run --rm -v "$opt_ml:/opt/ml" "$image" train
