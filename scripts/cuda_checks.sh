#!/usr/bin/env bash
# Everything issue 5 asks of a GPU, in one command, on a machine with a CUDA device:
#   1. build for the device's own architecture; run the CUDA tests (Cuda<float> vs Cpu<double> equality cases,
#      contexts, TF32, the CUDA examples)
#   2. compute-sanitizer memcheck and racecheck on the CUDA tests
#   3. bench_cuda (GEMM peak, B/2-like training step, exact vs learned sampling), JSON
#   4. the same training step in PyTorch (benchmarks/reference/latent_tarflow_torch.py), eager and torch.compile,
#      fp32 and TF32
#   5. GEMM share of a training step's GPU time (nsys, when installed)
#   6. latent_biflow_cuda --preset b2 on synthetic latents, --report
# Results go to ${OUT:-cuda-results}/. Every step runs even when an earlier one fails; the script exits 1 if any
# check failed (CUDA tests, sanitizer errors, a crashed benchmark or example) and names them at the end. Without a
# device it says so and exits 0 (exit 1 when BIFLOW_REQUIRE_GPU=1).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-cuda-results}
mkdir -p "$out"
if ! nvidia-smi -L > "$out/gpu.txt" 2>&1; then
  if [ "${BIFLOW_REQUIRE_GPU:-0}" = 1 ]; then
    echo "cuda_checks: BIFLOW_REQUIRE_GPU=1 but nvidia-smi finds no GPU" >&2
    exit 1
  fi
  echo "skipped: no CUDA device"
  exit 0
fi
failed=()
nvcc --version | tail -2 >> "$out/gpu.txt"
./scripts/deps.sh
build=${BIFLOW_BUILD_DIR:-build-cuda}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBIFLOW_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native
cmake --build "$build" -j "$(nproc)" --target biflow_cuda_tests bench_cuda latent_biflow_cuda toy_density_cuda
BIFLOW_REQUIRE_GPU=1 ctest --test-dir "$build" -R "cuda" --output-on-failure | tee "$out/ctest_cuda.txt" ||
  failed+=("CUDA ctests")
if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 99 "$build/tests/cuda/biflow_cuda_tests" \
      > "$out/sanitizer_$tool.txt" 2>&1 && echo "$tool: clean" ||
      { echo "$tool: FAILED (see $out/sanitizer_$tool.txt)"; failed+=("compute-sanitizer $tool"); }
  done
fi
"$build/benchmarks/bench_cuda" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/bench_cuda.json" --benchmark_out_format=json | tee "$out/bench_cuda.txt" || failed+=("bench_cuda")
if python3 -c "import torch" 2> /dev/null; then
  for tf in "" "--tf32" "--compile" "--tf32 --compile"; do  # PyTorch at its best: fused AdamW, foreach clip, compile
    python3 benchmarks/reference/latent_tarflow_torch.py --device cuda --width 768 --heads 12 --blocks 8 --layers 2 \
      --batch 64 $tf | tee -a "$out/torch.jsonl" || failed+=("PyTorch reference $tf")
  done
fi
if command -v nsys > /dev/null; then
  nsys profile -o "$out/train_step" --force-overwrite true "$build/benchmarks/bench_cuda" \
    --benchmark_filter='BM_TrainStep/768/8/2/64/0' > /dev/null 2>&1 || true
  nsys stats --report cuda_gpu_kern_sum --format csv "$out/train_step.nsys-rep" > "$out/kernels.csv" 2>/dev/null || true
  python3 - "$out/kernels.csv" <<'PY' | tee "$out/gemm_share.txt" || true
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 5]
head = rows[0]; t = head.index("Total Time (ns)"); n = head.index("Name")
tot = sum(float(r[t]) for r in rows[1:]); gemm = sum(float(r[t]) for r in rows[1:] if "gemm" in r[n].lower() or "sm90" in r[n].lower())
print(f"GEMM kernels: {100 * gemm / tot:.1f}% of GPU kernel time in the training-step benchmark")
PY
fi
"$build/examples/latent_biflow_cuda" --preset b2 --synthetic 4096 --flow-steps 200 --steps 200 \
  --report "$out/latent_biflow_b2.json" | tee "$out/latent_biflow_b2.txt" || failed+=("latent_biflow_cuda --preset b2")
echo "results in $out/"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'cuda_checks: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "cuda_checks: all checks passed"
