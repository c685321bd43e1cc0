#pragma once
// Multi-threading of the Cpu backend's loops, opt-in by compiling with OpenMP (-fopenmp; biflow's own targets do
// when BIFLOW_OPENMP=ON). Large GEMMs are split by rows across threads (each block an Eigen GEMM). Parallel loops
// write disjoint outputs and keep every reduction's order, so a run is reproducible for a given thread count;
// a GEMM's row blocks may get different cache blocking, so different thread counts can differ in the last bits.
// Without OpenMP everything runs serially; OMP_NUM_THREADS (or omp_set_num_threads) picks the thread count.
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace biflow::cpu {

/// Calls fn(lo, hi) on chunks of [0, n) of at least `grain` items, in parallel when there is enough work and
/// we are not already inside a parallel region.
template <class Fn>
void parallel_range(long n, long grain, Fn&& fn) {
#if defined(_OPENMP)
  if (grain < 1) grain = 1;
  if (n > grain && !omp_in_parallel() && omp_get_max_threads() > 1) {
    const long chunks = (n + grain - 1) / grain;
#pragma omp parallel for schedule(static)
    for (long b = 0; b < chunks; ++b) fn(b * grain, b * grain + grain < n ? b * grain + grain : n);
    return;
  }
#endif
  if (n > 0) fn(0L, n);
}

/// Elementary operations below which a loop is not worth waking a second thread for.
inline constexpr long kParallelGrain = 65536;
/// Items per chunk for loops whose items cost about `cost` elementary operations each.
inline long grain_for(long cost) { return cost >= kParallelGrain ? 1 : kParallelGrain / (cost > 0 ? cost : 1); }

/// Number of threads parallel loops use (1 without OpenMP).
inline int threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace biflow::cpu
