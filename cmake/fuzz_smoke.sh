#!/usr/bin/env bash
# Builds the libFuzzer targets (cmake/ddpmFuzz.cmake, clang) and runs each one
# for a fixed number of runs (seed 1, at most the given seconds) over its committed seed corpus (tests/fuzz/corpus/<target>).
# Any crash, sanitizer report, leak, timeout or out-of-memory fails the run; the
# input that caused it is left in <build>/fuzz-work/<target>/artifacts/.
#
#   cmake/fuzz_smoke.sh [seconds per target, default 30] [build folder, default build-fuzz]
#
# DDPM_FUZZ_CXX overrides the compiler (default clang++-14, else clang++).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
build=${2:-build-fuzz}
cxx=${DDPM_FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}
if [ -z "$cxx" ]; then
  echo "fuzz_smoke: no clang++ found (install clang-14 libclang-rt-14-dev libfuzzer-14-dev)" >&2
  exit 1
fi
cmake -S . -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release -DDDPM_FUZZ=ON \
  -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_EXAMPLES=OFF -DDDPM_CHECK_HEADERS=OFF >/dev/null
cmake --build "$build" --target ddpm_fuzz -j "${DDPM_FUZZ_JOBS:-2}"
status=0
for t in safetensors unet_config autoencoder_config model_index idx image; do
  work="$build/fuzz-work/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=("-dict=tests/fuzz/$t.dict")
  # New inputs go to the scratch corpus (first folder); the committed seeds are only read.
  # A fixed seed and run count make the smoke run the same on every machine
  # (the time limit only guards against a slow one); long runs are for development.
  if "$build/fuzz_$t" -seed=1 -runs="${DDPM_FUZZ_RUNS:-150000}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
      -artifact_prefix="$work/artifacts/" "$work/corpus" "tests/fuzz/corpus/$t" >"$work/log.txt" 2>&1; then
    echo "fuzz_$t: ok, $(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/log.txt" | grep -o '[0-9]*$') executions (seed 1, at most ${secs}s)"
  else
    echo "fuzz_$t: FAILED (log and the failing input below)" >&2
    tail -n 60 "$work/log.txt" >&2
    ls -l "$work/artifacts" >&2
    status=1
  fi
done
exit $status
