#!/usr/bin/env bash
# Regenerates the BiFlow ablation of docs/experiments.md on the digits: for each seed, trains one TARFlow F
# (saved), then trains the learned reverse model G in each configuration against that same F and collects the
# example's JSON reports into out/experiments/, then prints the markdown table (mean ± half-range over seeds).
#   ./scripts/experiments.sh [seeds=3] [extra digits_biflow flags...]
# About 13 minutes per seed on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-3}
shift || true
build=build-experiments
if [ ! -x "$build/examples/digits_biflow" ]; then
  ./scripts/deps.sh
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBIFLOW_BUILD_TESTS=OFF -DBIFLOW_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build "$build" -j "$(nproc)" --target digits_biflow
fi
exe="$build/examples/digits_biflow"
out=out/experiments
mkdir -p "$out"
configs=(
  "naive|--strategy naive"
  "hidden_distillation|--strategy distill"
  "hidden_alignment|--strategy align"
  "denoise_score|--denoise score"
  "denoise_none|--denoise none"
  "norm_off|--no-head-norm"
  "norm_clip|--state-clip 2"
  "mse_feature|--distance mse+feature"
  "cfg_inference|--cfg 1 --cfg-mode inference"
  "cfg_train|--cfg 1 --cfg-mode train"
)
for ((s = 0; s < seeds; s++)); do
  flow="$out/flow_seed$s.safetensors"
  first=1
  for c in "${configs[@]}"; do
    name=${c%%|*}
    flags=${c#*|}
    rep="$out/${name}_seed$s.json"
    [ -f "$rep" ] && continue
    if [ $first = 1 ] && [ ! -f "$flow" ]; then load="--save-flow $flow"; else load="--load-flow $flow"; fi
    first=0
    echo "== seed $s: $name ($flags)"
    # shellcheck disable=SC2086
    "$exe" --seed "$s" $load $flags --report "$rep" "$@" | grep -E "learned inverse|exact inverse|speedup|reconstruction"
  done
done
python3 - "$out" "$seeds" <<'PY'
import json, sys, glob, os
out, seeds = sys.argv[1], int(sys.argv[2])
names = ["naive", "hidden_distillation", "hidden_alignment", "denoise_score", "denoise_none", "norm_off", "norm_clip",
         "mse_feature", "cfg_inference", "cfg_train"]
def stat(v):
    m = sum(v) / len(v)
    return f"{m:.3f} ± {(max(v) - min(v)) / 2:.3f}"
print("| configuration | digits-FD learned | digits-FD exact | class acc learned | class acc exact | recon MSE | speedup |")
print("|---|---|---|---|---|---|---|")
for n in names:
    rs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, f"{n}_seed*.json")))][:seeds]
    if not rs: continue
    k = lambda key: stat([r[key] for r in rs])
    print(f"| {n} | {k('fd_learned')} | {k('fd_exact')} | {k('acc_learned')} | {k('acc_exact')} | {k('recon_mse')} | {k('speedup')} |")
print(f"\n{len(rs)} seeds; mean ± half-range.")
PY
