#!/usr/bin/env bash
# The demo: installs missing dependencies, builds toy_density, trains RealNVP on two moons (3000 steps),
# prints test NLL against a Gaussian baseline, and writes out/toy_density.png and out/toy_density.json.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
build=${BIFLOW_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target toy_density
mkdir -p out
"$build/examples/toy_density" --data "${1:-moons}" --model "${2:-realnvp}" --layers 8 --hidden 64 --steps 3000 \
  --batch 256 --seed 0 --report out/toy_density.json --plot out/toy_density.png
echo "demo: see out/toy_density.png and out/toy_density.json"
