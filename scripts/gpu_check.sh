#!/usr/bin/env bash
# The GPU check in two halves, for a borrowed GPU machine that has no network, no package registry and no
# Eigen/doctest/Google Benchmark (docs/performance.md, "The GPU check").
#
#   HERE (this machine, with nvcc):  scripts/gpu_check.sh build [BUILD_DIR]
#       configures and builds every CUDA binary (tests, examples, bench_cuda) for sm_90 into BUILD_DIR
#       (default build-gpu), then packs them with the shared libraries the GPU image lacks into gpu-kit/ (ignored,
#       carried; < 60 MiB) and prints the exact command to run there.
#   scripts/gpu_check.sh kit [BUILD_DIR]   only the packing step, from an existing build folder.
#
#   THERE (the GPU machine):  bash scripts/gpu_check.sh run
#       needs only gpu-kit/, this repository's files and the image's python3 + PyTorch. Every step runs under its
#       own timeout inside a total budget (GPU_CHECK_BUDGET_S, default 330 s); a failing step is recorded and the
#       next one runs. Results: $OUT/summary.txt, $OUT/summary.json, $OUT/results.tar.gz (3 files; at most 8 may
#       come back). Exit 1 if any step failed, 0 otherwise.
#   scripts/gpu_check.sh run --dry-run   the same steps here, on the CPU: each CUDA step must report "no device"
#       (exit 77) and the PyTorch steps are skipped; CI runs this to prove the script itself works.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
kit=$root/gpu-kit

bins=(tests/cuda/biflow_cuda_tests tests/cuda/biflow_nccl_tests benchmarks/bench_cuda examples/latent_biflow_cuda
  examples/toy_density_cuda)

pack() {  # pack BUILD_DIR: binaries + the non-system shared libraries they load (not cuBLAS: the image has it)
  local build=$1
  rm -rf "$kit"
  mkdir -p "$kit/bin" "$kit/lib"
  for b in "${bins[@]}"; do
    [ -x "$build/$b" ] || { echo "gpu_check: $build/$b is missing (build it first: scripts/gpu_check.sh build)" >&2; exit 1; }
    cp "$build/$b" "$kit/bin/"
    strip --strip-debug "$kit/bin/$(basename "$b")" 2> /dev/null || true
    # Libraries outside the C/C++ runtime and outside cuBLAS and NCCL (too large to carry; the image's CUDA or its
    # pip nvidia-cublas / nvidia-nccl provide them): Google Benchmark, the CUDA runtime, OpenMP.
    ldd "$build/$b" | awk '/=> \// {print $1, $3}' | while read -r name path; do
      case "$name" in
        libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcublas*|libnccl*) ;;
        *) cp -L "$path" "$kit/lib/$name" ;;
      esac
    done
  done
  { git -C "$root" rev-parse HEAD; date -u +%FT%TZ; nvcc --version | tail -1; } > "$kit/BUILD_INFO"
  local mib
  mib=$(du -sm "$kit" | cut -f1)
  echo "gpu_check: kit $kit: ${mib} MiB ($(ls "$kit/bin" | tr '\n' ' ')+ $(ls "$kit/lib" | tr '\n' ' '))"
  if [ "$mib" -ge 60 ]; then
    echo "gpu_check: the kit is ${mib} MiB, over the 60 MiB carry budget" >&2
    exit 1
  fi
}

case "${1:-}" in
  build)
    build=${2:-build-gpu}
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBIFLOW_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DBIFLOW_BUILD_EXAMPLES=ON -DBIFLOW_BUILD_BENCHMARKS=ON -DBIFLOW_CPU_BLAS=eigen > /dev/null || exit 1
    # (Eigen for the Cpu side: the GPU machine has no OpenBLAS/BLIS to load.)
    cmake --build "$build" -j "$(nproc)" --target biflow_cuda_tests biflow_nccl_tests bench_cuda latent_biflow_cuda \
      toy_density_cuda ||
      exit 1
    pack "$build"
    cat << 'EOF'
gpu_check: on the GPU machine run (device tool), with carry ["gpu-kit"] and timeout_s 420:
  bash scripts/gpu_check.sh run
EOF
    exit 0
    ;;
  kit)
    pack "${2:-build}"
    exit 0
    ;;
  run) ;;
  *)
    sed -n '2,19p' "$0"
    exit 2
    ;;
esac

dry=0
[ "${2:-}" = "--dry-run" ] && dry=1
out=${OUT:-$root/gpu-results}
mkdir -p "$out"
work=$(mktemp -d)
budget=${GPU_CHECK_BUDGET_S:-330}
t_start=$(date +%s)
results=()
failed=0
[ -d "$kit/bin" ] || { echo "gpu_check: no $kit (run 'scripts/gpu_check.sh build' here and carry gpu-kit)" >&2; exit 1; }
export LD_LIBRARY_PATH="$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=passive
if [ $dry = 0 ]; then
  export BIFLOW_REQUIRE_GPU=1  # a skip is a failure on the machine that has the GPU
fi

# step NAME TIMEOUT_S CMD...: runs CMD under min(TIMEOUT_S, what is left of the budget), output to NAME.txt;
# records rc, seconds and a status: passed, failed (rc), timeout, no device (rc 77 / the skip line) or skipped
# (the budget is spent).
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - ($(date +%s) - t_start)))
  if [ "$left" -lt 15 ]; then
    results+=("$name|skipped (budget spent)|-|0")
    failed=1  # a check that did not run has not passed
    echo "gpu_check: $name: skipped (budget spent)"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0 rc status
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" > "$work/$name.txt" 2>&1
  rc=$?
  local secs=$(($(date +%s) - t0))
  if [ $rc = 0 ]; then
    status=passed
    grep -q "^skipped: no CUDA device" "$work/$name.txt" && status="no device"
  elif [ $rc = 77 ]; then status="no device"
  elif [ $rc = 124 ] || [ $rc = 137 ]; then status="timeout (${limit} s)"
  else status="failed (rc $rc)"
  fi
  if [ "$status" = "no device" ] && [ $dry = 0 ]; then status="failed (no device on the GPU machine)"; fi
  case "$status" in passed|"no device") ;; *) failed=1 ;; esac
  results+=("$name|$status|$rc|$secs")
  echo "gpu_check: $name: $status in ${secs} s"
  tail -3 "$work/$name.txt" | sed 's/^/    /'
}

bin=$kit/bin
# 0. the machine and whether every binary's libraries resolve (libcublas from the image's CUDA or its pip wheel)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
done
if ! ldd "$bin/biflow_cuda_tests" | grep -q "libcublas.so.13 => /"; then
  py_cublas=$(python3 -c 'import nvidia, os, glob; print(":".join(sorted({os.path.dirname(p) for r in nvidia.__path__
    for p in glob.glob(os.path.join(r, "**", "libcublas*.so.13"), recursive=True)})))' 2> /dev/null)
  [ -n "$py_cublas" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$py_cublas"
fi
if ! ldd "$bin/biflow_nccl_tests" | grep -q "libnccl.so.2 => /"; then  # NCCL: the image's CUDA or pip nvidia-nccl
  py_nccl=$(python3 -c 'import nvidia, os, glob; print(":".join(sorted({os.path.dirname(p) for r in nvidia.__path__
    for p in glob.glob(os.path.join(r, "**", "libnccl.so.2"), recursive=True)})))' 2> /dev/null)
  [ -n "$py_nccl" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$py_nccl"
fi
{
  echo "date: $(date -u +%FT%TZ)"
  echo "kit: $(tr '\n' ' ' < "$kit/BUILD_INFO")"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi -L
    nvidia-smi --query-gpu=driver_version,memory.total,clocks.max.sm --format=csv
  else
    echo "nvidia-smi: not installed"
  fi
  command -v nvcc > /dev/null && nvcc --version | tail -2
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  for b in "$bin"/*; do
    echo "== ldd $(basename "$b")"
    ldd "$b"
  done
} > "$work/machine.txt" 2>&1
missing=$(grep -c "=> not found" "$work/machine.txt")
if [ "$missing" != 0 ]; then
  results+=("libraries|failed ($missing not found: see machine.txt)|1|0")
  failed=1
  grep "=> not found" "$work/machine.txt" | sort -u
else
  results+=("libraries|passed|0|0")
fi

# 1. correctness: every CUDA test (the equality cases against Cpu<double>, contexts, math modes, large grids)
step cuda_tests 150 "$bin/biflow_cuda_tests" --reporters=console
step toy_density_cuda 45 "$bin/toy_density_cuda" --steps 200
step nccl 30 "$bin/biflow_nccl_tests" --reporters=console
# 2. compute-sanitizer: memcheck on the primitive, module and attention equality cases; racecheck on one case
if [ $dry = 1 ] || command -v compute-sanitizer > /dev/null; then
  memcheck=(compute-sanitizer --error-exitcode 99 --tool memcheck)
  racecheck=(compute-sanitizer --error-exitcode 99 --tool racecheck)
  [ $dry = 1 ] && memcheck=() && racecheck=()  # the dry run checks the step, not the tool
  step memcheck 90 "${memcheck[@]}" "$bin/biflow_cuda_tests" \
    '--test-case=equality: gemm*,equality: elementwise*,equality: softmax*,equality: nn modules*,equality: attention*'
  # softmax + LayerNorm: the kernels with shared memory (LayerNorm's parameter gradients, the reductions)
  step racecheck 60 "${racecheck[@]}" "$bin/biflow_cuda_tests" '--test-case=equality: softmax*'
else
  results+=("compute-sanitizer|failed (not installed)|1|0")
  failed=1
fi
# 3. speed: one repetition of the figures docs/performance.md quotes
step bench_cuda 150 "$bin/bench_cuda" --benchmark_repetitions=1 --benchmark_min_time=0.5 \
  '--benchmark_filter=BM_Gemm/8192|BM_GemmB2|BM_ColSum|BM_TrainStep/768|BM_SampleExact|BM_SampleLearned' \
  --benchmark_out="$work/bench_cuda.json" --benchmark_out_format=json
# 4. the same training step in PyTorch at its best (fused AdamW, foreach clipping, set_to_none; 1000 classes)
if [ $dry = 0 ] && python3 -c "import torch; assert torch.cuda.is_available()" 2> /dev/null; then
  ref=(python3 benchmarks/reference/latent_tarflow_torch.py --device cuda --classes 1000 --width 768 --heads 12
    --blocks 8 --layers 2 --batch 64)
  step torch_fp32 45 "${ref[@]}"
  step torch_tf32 45 "${ref[@]}" --tf32
  step torch_bf16 45 "${ref[@]}" --bf16
  step torch_tf32_compile 120 "${ref[@]}" --tf32 --compile
else
  results+=("pytorch reference|no device|-|0")
fi
# 5. the B/2 pipeline end to end, shortened to fit (train F, train G, exact vs learned sampling, --report)
step latent_biflow_b2 90 "$bin/latent_biflow_cuda" --preset b2 --synthetic 2048 --flow-steps 60 --steps 60 \
  --repeats 1 --report "$work/latent_biflow_b2.json"

# summary (the three files that come back)
{
  echo "biflow GPU check ($([ $dry = 1 ] && echo dry run on the CPU || echo GPU run)), total $(($(date +%s) - t_start)) s"
  printf '%-22s %-40s %5s %6s\n' step status rc seconds
  for r in "${results[@]}"; do
    IFS='|' read -r n s c t <<< "$r"
    printf '%-22s %-40s %5s %6s\n' "$n" "$s" "$c" "$t"
  done
} | tee "$out/summary.txt"
python3 - "$out/summary.json" "${results[@]}" << 'PY'
import json, sys
rows = [dict(zip(("step", "status", "rc", "seconds"), r.split("|"))) for r in sys.argv[2:]]
json.dump({"steps": rows}, open(sys.argv[1], "w"), indent=1)
PY
cp "$out/summary.txt" "$work/"
tar -czf "$out/results.tar.gz" -C "$work" .
rm -rf "$work"
echo "gpu_check: results in $out ($(ls "$out" | tr '\n' ' '))"
if [ $failed = 1 ]; then
  echo "gpu_check: some steps FAILED (see summary.txt)" >&2
  exit 1
fi
echo "gpu_check: every step passed"
