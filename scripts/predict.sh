#!/usr/bin/env bash
# Classify image files with a running server (scripts/docker_serve.sh or `convlab serve`).
#   scripts/predict.sh IMAGE.png [IMAGE.jpg ...]
# URL defaults to http://localhost:8080; set URL to point elsewhere, ACCEPT for text/csv.
# Prints each answer; exits 1 when a file cannot be read or the server answers anything but 2xx
# (the other files are still sent), 2 on a usage mistake.
set -uo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 IMAGE [IMAGE ...]" >&2
    exit 2
fi
url="${URL:-http://localhost:8080}"
accept="${ACCEPT:-application/json}"
curl -fsS "$url/ping" > /dev/null || { echo "predict.sh: no server answers $url/ping" >&2; exit 1; }
body="$(mktemp)"
trap 'rm -f "$body"' EXIT
failed=0
for image in "$@"; do
    if [ ! -f "$image" ] || [ ! -r "$image" ]; then
        echo "predict.sh: $image: not a readable file" >&2
        failed=1
        continue
    fi
    status="$(curl -sS -o "$body" -w '%{http_code}' -X POST "$url/invocations" \
        -H "Content-Type: application/x-image" -H "Accept: $accept" \
        --data-binary "@$image")" || {
        echo "predict.sh: $image: request to $url/invocations failed" >&2
        failed=1
        continue
    }
    if [ "${status:0:1}" = "2" ]; then
        printf '%s: %s\n' "$image" "$(cat "$body")"
    else
        echo "predict.sh: $image: the server answered $status: $(cat "$body")" >&2
        failed=1
    fi
done
exit "$failed"
