#!/usr/bin/env bash
# Train in the container exactly as SageMaker does, against a local /opt/ml tree.
#   convlab opt-ml opt_ml --train DATA_DIR --hp epochs=3      # lays out opt_ml/ as SageMaker does
#   scripts/docker_train.sh OPT_ML_DIR [IMAGE]
# The model_dir appears in OPT_ML_DIR/model, checkpoints in OPT_ML_DIR/checkpoints (a rerun resumes
# after the last completed epoch, as a restarted spot job does), and on failure the reason is in
# OPT_ML_DIR/output/failure and the exit status is non-zero. NAME in the environment names the container.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 OPT_ML_DIR [IMAGE]" >&2
    exit 2
fi
if [ ! -d "$1/input/config" ]; then
    echo "docker_train.sh: $1 is not an /opt/ml tree (no input/config/); lay one out with: convlab opt-ml $1 --train DATA_DIR" >&2
    exit 2
fi
if ! docker info >/dev/null 2>&1; then
    echo "docker_train.sh: no Docker engine answers; train without Docker: convlab train --local --train DATA_DIR" >&2
    exit 1
fi
opt_ml="$(cd "$1" && pwd)"
image="${2:-convlab:latest}"
mkdir -p "$opt_ml/model" "$opt_ml/output" "$opt_ml/checkpoints"
name_args=()
[ -n "${NAME:-}" ] && name_args=(--name "$NAME")
status=0
docker run --rm "${name_args[@]}" --network none -v "$opt_ml:/opt/ml" "$image" train || status=$?
if [ "$status" -ne 0 ]; then
    if [ -s "$opt_ml/output/failure" ]; then
        echo "docker_train.sh: training failed: $(head -n 1 "$opt_ml/output/failure")" >&2
    else
        echo "docker_train.sh: the container exited with status $status" >&2
    fi
fi
exit "$status"
