#!/usr/bin/env bash
# Fuzzes biflow's file parsers (safetensors, npy, csv) with libFuzzer + ASan + UBSan for a bounded time each,
# starting from the committed corpus (fuzz/corpus/<parser>, read-only here; new inputs go to build-fuzz/).
#   ./scripts/fuzz.sh [seconds per parser, default 60]
# A crash leaves its input as build-fuzz/crash-* and makes the script fail; add the input to fuzz/corpus/<parser>
# once it is fixed so fuzz_corpus_<parser> keeps it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
if ! command -v clang++ >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends clang
fi
major=$(clang++ -dumpversion | cut -d. -f1)
if [ ! -f "$(clang++ -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "libclang-rt-${major}-dev"
fi
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIFLOW_BUILD_FUZZERS=ON \
  -DBIFLOW_BUILD_TESTS=OFF -DBIFLOW_BUILD_EXAMPLES=OFF -DBIFLOW_BUILD_BENCHMARKS=OFF -DBIFLOW_ENABLE_CUDA=OFF \
  -DBIFLOW_OPENMP=OFF > /dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_safetensors fuzz_npy fuzz_csv
for t in safetensors npy csv; do
  mkdir -p "build-fuzz/corpus-$t"
  echo "fuzzing the $t parser for ${secs}s"
  rc=0
  (cd build-fuzz && ./fuzz/fuzz_$t -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
     -print_final_stats=1 "corpus-$t" "../fuzz/corpus/$t" > "fuzz-$t.log" 2>&1) || rc=$?
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "build-fuzz/fuzz-$t.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "build-fuzz/fuzz-$t.log" >&2
    echo "fuzz: the $t parser failed (exit $rc); reproducer: $(ls build-fuzz/crash-* build-fuzz/timeout-* build-fuzz/oom-* build-fuzz/leak-* 2>/dev/null)" >&2
    exit 1
  fi
done
echo "fuzz: no crash in ${secs}s per parser"
