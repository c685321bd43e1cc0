#pragma once
// Opt-in allocator tuning for Cpu training loops.
//
// Why: a training step frees and re-allocates the same tensors every step. glibc gives freed memory at
// the top of the heap back to the OS once more than M_TRIM_THRESHOLD (128 KiB by default) is free, so
// the next step page-faults every page back in. Measured on toy_density (RealNVP, batch 256): 17% of
// the step was kernel page-fault time, and the step ran 1.6x slower than with the thresholds raised.
// This is process-wide, so biflow never does it behind your back: call it once at program start.
#include <cstddef>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace biflow::cpu {

/// Keeps up to `bytes` of freed heap memory mapped (raises glibc's trim and mmap thresholds).
/// Returns false where this has no effect (non-glibc C libraries, or a sanitizer's allocator).
inline bool keep_heap_pages(std::size_t bytes = std::size_t(256) << 20) {
#if defined(__GLIBC__)
  const int b = bytes > std::size_t(1) << 30 ? 1 << 30 : int(bytes);
  return mallopt(M_TRIM_THRESHOLD, b) == 1 && mallopt(M_MMAP_THRESHOLD, b / 4 > (32 << 20) ? (32 << 20) : b / 4) == 1;
#else
  (void)bytes;
  return false;
#endif
}

}  // namespace biflow::cpu
