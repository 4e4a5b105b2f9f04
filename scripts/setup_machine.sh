#!/usr/bin/env bash
# What the tests and the demo need from the machine, beyond Python packages:
#   Fashion-MNIST (Debian's dataset-fashion-mnist), a Docker engine with docker-compose (the
#   container tests, ModelTrainer LOCAL_CONTAINER), debootstrap (the offline base image), and
#   Chromium with ChromeDriver (the browser test of the model page).
# As root with apt, missing Debian packages are installed and dockerd is started when no Docker
# engine answers. Elsewhere it only says what is missing: those tests skip, each with one line.
#   scripts/setup_machine.sh [--no-docker] [--no-browser]
set -uo pipefail
want_docker=1
want_browser=1
for arg in "$@"; do
    case "$arg" in
        --no-docker) want_docker=0 ;;
        --no-browser) want_browser=0 ;;
        *) echo "usage: $0 [--no-docker] [--no-browser]" >&2; exit 2 ;;
    esac
done

packages=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || packages+=(dataset-fashion-mnist)
if [ "$want_docker" = 1 ]; then
    command -v dockerd >/dev/null 2>&1 || packages+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || packages+=(docker-compose)
    command -v debootstrap >/dev/null 2>&1 || packages+=(debootstrap)
fi
if [ "$want_browser" = 1 ]; then
    command -v chromium >/dev/null 2>&1 || packages+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
fi

root_with_apt=0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then root_with_apt=1; fi
if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$root_with_apt" = 1 ]; then
        echo "installing Debian packages: ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
            || echo "setup_machine.sh: apt-get could not install ${packages[*]}; the tests that need them skip"
    else
        echo "setup_machine.sh: not root with apt; missing: ${packages[*]} (the tests that need them skip)"
    fi
fi

if [ "$want_docker" = 1 ] && ! docker info >/dev/null 2>&1; then
    if [ "$root_with_apt" = 1 ] && command -v dockerd >/dev/null 2>&1; then
        echo "starting dockerd (log: /var/log/convlab-dockerd.log)"
        nohup dockerd >/var/log/convlab-dockerd.log 2>&1 &
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && break
            sleep 0.5
        done
        docker info >/dev/null 2>&1 || { echo "setup_machine.sh: dockerd did not start:"; tail -n 5 /var/log/convlab-dockerd.log; }
    else
        echo "setup_machine.sh: no Docker engine answers and none can be started here; the container tests skip"
    fi
fi
exit 0
