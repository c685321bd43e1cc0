#!/usr/bin/env bash
# Regenerates the BiFlow ablation of docs/experiments.md on the digits: for each seed, trains one TARFlow F
# (saved), then trains the learned reverse model G in each configuration against that same F and collects the
# example's JSON reports into out/experiments/, then prints the markdown table (mean ± half-range over seeds).
#   ./scripts/experiments.sh [seeds=3] [extra digits_biflow flags...]
# About 15 minutes per seed on a 2-core machine.
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
  "sample_pool|--sample-pool 4000"
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
         "mse_feature", "cfg_inference", "cfg_train", "sample_pool"]
def stat(v, d=3):
    m = sum(v) / len(v)
    return f"{m:.{d}f} ± {(max(v) - min(v)) / 2:.{d}f}"
print("| configuration | digits-FD learned | digits-FD exact | ΔFD (learned − exact) | FD 17-level learned | FD 17-level exact "
      "| class acc learned | class acc exact | recon MSE | G vs exact MSE | speedup |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
n_seeds = 0
for n in names:
    rs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, f"{n}_seed*.json")))][:seeds]
    rs = [r for r in rs if "fd_learned_quantised" in r]  # reports of this protocol only
    if not rs: continue
    n_seeds = max(n_seeds, len(rs))
    k = lambda key, d=3: stat([r[key] for r in rs], d)
    delta = stat([r["fd_learned"] - r["fd_exact"] for r in rs])
    print(f"| {n} | {k('fd_learned')} | {k('fd_exact')} | {delta} | {k('fd_learned_quantised')} | "
          f"{k('fd_exact_quantised')} | {k('acc_learned')} | {k('acc_exact')} | {k('recon_mse', 4)} | "
          f"{k('sample_mse_learned_vs_exact', 4)} | {k('speedup', 1)} |")
print(f"\n{n_seeds} seeds (one F per seed); mean ± half-range; Δ is paired per seed.")
PY
