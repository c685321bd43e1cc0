#pragma once
// Host memory figures for benchmarks and examples: resident set size now and at its peak (Linux /proc), a peak
// that can be reset, and an allocator setting under which the resident size follows the live tensors.
//
// Why resident memory and not a byte counter: the Cpu tensor is an Eigen matrix allocated with malloc, and
// counting those bytes would need a hook in every allocation (hidden global state). The kernel already counts
// pages; with large allocations mapped one by one (map_large_allocations) a freed tensor leaves the resident
// set at once, so the peak over a step minus the size before it is the step's working memory.
#include <cstddef>
#include <cstdio>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace biflow::cpu {

namespace detail {
/// A "Key:   123 kB" line of /proc/self/status in bytes; -1 where unavailable.
inline long long proc_status_bytes(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long long out = -1;
  const std::size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
      long long kb = 0;
      if (std::sscanf(line + n + 1, "%lld", &kb) == 1) out = kb * 1024;
      break;
    }
  }
  std::fclose(f);
  return out;
}
}  // namespace detail

/// Resident set size of this process in bytes (VmRSS); -1 where /proc is unavailable.
inline long long resident_bytes() { return detail::proc_status_bytes("VmRSS"); }
/// Peak resident set size in bytes since start or the last reset_resident_peak() (VmHWM); -1 if unavailable.
inline long long resident_peak_bytes() { return detail::proc_status_bytes("VmHWM"); }
/// Resets the peak to the current resident size (Linux ≥ 4.0: /proc/self/clear_refs); false where unsupported.
inline bool reset_resident_peak() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

/// Every allocation of at least `bytes` gets its own mapping, returned to the OS when freed, and the heap is
/// trimmed eagerly: the resident size then follows the live tensors (for measuring memory; slower than
/// keep_heap_pages for timing). Process-wide, so only on request. False where it has no effect.
inline bool map_large_allocations(std::size_t bytes = std::size_t(64) << 10) {
#if defined(__GLIBC__)
  return mallopt(M_MMAP_THRESHOLD, int(bytes)) == 1 && mallopt(M_TRIM_THRESHOLD, int(bytes)) == 1;
#else
  (void)bytes;
  return false;
#endif
}

}  // namespace biflow::cpu
