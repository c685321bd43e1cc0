#!/usr/bin/env bash
# The demo: installs missing dependencies, builds the examples and runs one of them.
#   ./scripts/demo.sh                  toy_density: RealNVP on two moons (3000 steps, ~5 s), out/toy_density.{png,json}
#   ./scripts/demo.sh moons|checkerboard|8gaussians|rings [realnvp|maf]    the same on another 2-D set / model
#   ./scripts/demo.sh digits           digits_tarflow: class-conditional TARFlow on the real 8x8 digits (~2 min on
#                                      2 cores), test bits/dim and samples per class, out/digits_tarflow.{png,json}
#   ./scripts/demo.sh biflow           digits_biflow: that TARFlow, then its learned inverse G (BiFlow, one pass):
#                                      quality and speed against the exact inverse (~3.5 min), out/digits_biflow.*
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenMP threads sleep instead of spinning when they wait (docs/performance.md: 5x on a busy 2-core machine).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
BIFLOW_DEPS_NO_MPI=1 ./scripts/deps.sh
build=${BIFLOW_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
mkdir -p out
if [ "${1:-}" = "digits" ]; then
  cmake --build "$build" -j "$(nproc)" --target digits_tarflow
  "$build/examples/digits_tarflow" --seed 0 --report out/digits_tarflow.json --plot out/digits_tarflow.png \
    --save out/digits_tarflow.safetensors
  echo "demo: see out/digits_tarflow.png and out/digits_tarflow.json"
  exit 0
fi
if [ "${1:-}" = "biflow" ]; then
  cmake --build "$build" -j "$(nproc)" --target digits_biflow
  "$build/examples/digits_biflow" --seed 0 --report out/digits_biflow.json --plot out/digits_biflow.png \
    --save-flow out/digits_biflow_flow.safetensors
  echo "demo: see out/digits_biflow.png and out/digits_biflow.json"
  exit 0
fi
cmake --build "$build" -j "$(nproc)" --target toy_density
"$build/examples/toy_density" --data "${1:-moons}" --model "${2:-realnvp}" --layers 8 --hidden 64 --steps 3000 \
  --batch 256 --seed 0 --report out/toy_density.json --plot out/toy_density.png
echo "demo: see out/toy_density.png and out/toy_density.json"
