#!/usr/bin/env bash
# The test command: installs missing dependencies, builds everything (CUDA parts too where nvcc exists),
# and runs the whole CTest suite. CUDA tests report "skipped" when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
build=${BIFLOW_BUILD_DIR:-build}
jobs=${BIFLOW_JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs"
# Tests run in parallel and each may use OpenMP threads: idle threads sleep instead of spinning on busy cores.
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} ctest --test-dir "$build" --output-on-failure -j "$jobs"
