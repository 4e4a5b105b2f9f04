#!/usr/bin/env bash
# The offline (air-gapped) base image: a Debian bookworm root filesystem with Python 3.11, made by
# debootstrap from this machine's Debian mirror and imported into Docker. Use it where Docker Hub
# cannot be reached, so that `FROM python:3.11-slim` cannot be pulled:
#   scripts/docker_base.sh [TAG]          (default tag: convlab-base:bookworm)
#   docker build --build-arg BASE_IMAGE=convlab-base:bookworm -t convlab:latest .
# scripts/docker_build.sh does both by itself when the pull fails. Needs root and debootstrap
# (apt-get install debootstrap). The host's own CA certificates (/usr/local/share/ca-certificates)
# are trusted in the image as on the host. The mirror is the first Debian URI apt is configured with, or
# DEBIAN_MIRROR.
set -euo pipefail
tag="${1:-convlab-base:bookworm}"
suite="${DEBIAN_SUITE:-bookworm}"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag exists"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "docker_base.sh: debootstrap needs root; run it as root or pull python:3.11-slim" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    else
        echo "docker_base.sh: debootstrap is not installed (apt-get install debootstrap)" >&2
        exit 1
    fi
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror="$(grep -rhoE '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/ 2>/dev/null | head -n1 | awk '{print $2}' || true)"
fi
if [ -z "$mirror" ]; then
    mirror="$(grep -rhoE '^deb +http[^ ]*/debian/? +' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | head -n1 | awk '{print $2}' || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d /tmp/convlab-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
# The base trusts what this machine trusts: local CA certificates (a proxy's or a company's) are
# copied in, so pip inside `docker build` reaches the package index the way the host does.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
fi
# What a slim image leaves out: package lists and caches, documentation, locales.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "built base image $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
