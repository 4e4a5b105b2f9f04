#!/usr/bin/env bash
# Classify image files with a running server (scripts/docker_serve.sh or `convlab serve`).
#   scripts/predict.sh IMAGE.png [IMAGE.jpg ...]
# URL defaults to http://localhost:8080; set URL to point elsewhere, ACCEPT for text/csv.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 IMAGE [IMAGE ...]" >&2
    exit 2
fi
url="${URL:-http://localhost:8080}"
accept="${ACCEPT:-application/json}"
curl -fsS "$url/ping" > /dev/null || { echo "no server answers $url/ping" >&2; exit 1; }
for image in "$@"; do
    printf '%s: ' "$image"
    curl -sS -X POST "$url/invocations" \
        -H "Content-Type: application/x-image" -H "Accept: $accept" \
        --data-binary "@$image"
    echo
done
