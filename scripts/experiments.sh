#!/usr/bin/env bash
# Regenerates the BiFlow ablation of docs/experiments.md on the digits: for each seed, trains one TARFlow F
# (saved), then trains the learned reverse model G in each configuration against that same F and collects the
# example's JSON reports into out/experiments/, then prints the markdown table (mean ± half-range over seeds).
#   ./scripts/experiments.sh [seeds=3] [extra digits_biflow flags...]
#   CONFIGS="hidden_alignment naive" ./scripts/experiments.sh 3     (a subset of the configurations)
# About 15 minutes per seed on a 2-core machine for all configurations, 4 for one.
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenMP threads sleep instead of spinning when they wait (docs/performance.md: 5x on a busy 2-core machine).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
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
if [ -n "${CONFIGS:-}" ]; then
  keep=()
  for c in "${configs[@]}"; do [[ " $CONFIGS " == *" ${c%%|*} "* ]] && keep+=("$c"); done
  configs=("${keep[@]}")
fi
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
    "$exe" --seed "$s" $load $flags --report "$rep" "$@" | grep -E "learned inverse|exact inverse|ref:|speedup|reconstruction|sample quality"
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
# Equal-n protocol (digits_biflow's quality suite): pixel-space FD and KID vs half of the test digits, precision,
# recall, novelty; the reference rows (copies, held-out half, class mean + noise) come from the same reports.
print("| configuration | FD learned | FD exact | ΔFD (learned − exact) | KID×1e3 learned | KID×1e3 exact | precision learned "
      "| recall learned | novelty learned | class acc learned | class acc exact | recon MSE | G vs exact MSE | speedup |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
n_seeds = 0
refs = []
for n in names:
    rs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, f"{n}_seed*.json")))][:seeds]
    rs = [r for r in rs if "fd_pix_learned" in r]  # reports of this protocol only
    if not rs: continue
    refs = refs or rs
    n_seeds = max(n_seeds, len(rs))
    k = lambda key, d=3: stat([r[key] for r in rs], d)
    kk = lambda key, d=1: stat([1e3 * r[key] for r in rs], d)
    delta = stat([r["fd_pix_learned"] - r["fd_pix_exact"] for r in rs])
    print(f"| {n} | {k('fd_pix_learned')} | {k('fd_pix_exact')} | {delta} | {kk('kid_pix_learned')} | {kk('kid_pix_exact')} "
          f"| {k('precision_pix_learned')} | {k('recall_pix_learned')} | {k('novelty_pix_learned')} | {k('acc_learned')} "
          f"| {k('acc_exact')} | {k('recon_mse', 4)} | {k('sample_mse_learned_vs_exact', 4)} | {k('speedup', 1)} |")
if refs:
    print("\nReference rows, same protocol (pixel space):\n")
    print("| reference | FD | KID×1e3 | precision | recall | novelty | class acc |")
    print("|---|---|---|---|---|---|---|")
    for key, label in [("train_copies", "copied training digits"), ("heldout", "held-out test digits (other half)"),
                       ("mean_noise", "class mean + noise"), ("exact_no_denoise", "exact inverse, no denoising")]:
        k = lambda st, d=3: stat([r[f"{st}_pix_{key}"] for r in refs], d)
        print(f"| {label} | {k('fd')} | {stat([1e3 * r[f'kid_pix_{key}'] for r in refs], 1)} | {k('precision')} | "
              f"{k('recall')} | {k('novelty')} | {stat([r[f'acc_{key}'] for r in refs])} |")
print(f"\n{n_seeds} seeds (one F per seed); mean ± half-range over seeds of each run's median over its random splits; "
      "Δ is paired per seed.")
PY
