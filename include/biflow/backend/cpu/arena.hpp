#pragma once
// cpu::Arena: reuses Cpu tensor buffers across training steps, so a step allocates nothing after warm-up.
//
// Why: a training step makes and frees the same tensors every step. Behind malloc that is a free-list walk per
// tensor (and, without cpu::keep_heap_pages, page faults when glibc trims). An arena keeps each freed buffer in a
// list for its size and hands it out again on the next request of that size: after the first step every request
// is a reuse, and `stats()` counts both, which is what the allocation test checks.
//
// Explicit, not global: a tensor comes from an arena only while an ArenaScope for it is alive on the making
// thread (the trainers open one around each step; Optimization owns their arena). Without a scope, tensors come
// from the heap as before. Results never depend on where a buffer came from. A pooled buffer remembers its
// arena's pool (shared ownership), so a tensor may outlive the scope and the arena; it is returned, or freed when
// the arena is gone.
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace biflow::cpu {

namespace detail {
inline constexpr std::size_t kArenaAlign = 64;  // a cache line; AVX-512 loads

struct ArenaPool {
  std::mutex mu;  // a tensor may be freed on another thread than the one that made it
  std::unordered_map<std::size_t, std::vector<void*>> free;  // by size in bytes (a multiple of 64)
  long long reused = 0, allocated = 0, released = 0;
  std::size_t held_bytes = 0, live_bytes = 0, peak_live_bytes = 0;
  std::size_t limit = 0;  // 0: the default, 4x the peak of live bytes (at least 64 MiB)

  ArenaPool() = default;
  ArenaPool(const ArenaPool&) = delete;
  ArenaPool& operator=(const ArenaPool&) = delete;
  ~ArenaPool() { release_held(); }

  void* take(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = free.find(bytes);
      if (it != free.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        held_bytes -= bytes;
        live_bytes += bytes;
        peak_live_bytes = live_bytes > peak_live_bytes ? live_bytes : peak_live_bytes;
        ++reused;
        return p;
      }
      ++allocated;
      live_bytes += bytes;
      peak_live_bytes = live_bytes > peak_live_bytes ? live_bytes : peak_live_bytes;
    }
    void* p = std::aligned_alloc(kArenaAlign, bytes);
    if (!p) {
      std::lock_guard<std::mutex> lock(mu);
      --allocated;
      live_bytes -= bytes;
      throw std::bad_alloc();
    }
    return p;
  }
  void give(void* p, std::size_t bytes) noexcept {
    std::lock_guard<std::mutex> lock(mu);
    live_bytes -= bytes;
    // A bound on what is held: a repeating step needs a few times its peak (each size keeps its own buffers),
    // and sizes that keep changing (a new shape every step) then go back to the heap instead of piling up.
    const std::size_t cap = limit ? limit : std::max<std::size_t>(4 * peak_live_bytes, std::size_t(64) << 20);
    if (held_bytes + bytes > cap) {
      std::free(p);
      ++released;
      return;
    }
    try {
      free[bytes].push_back(p);  // grows only while the step's set of sizes is still new
      held_bytes += bytes;
    } catch (...) {
      std::free(p);
    }
  }
  void release_held() noexcept {
    for (auto& [bytes, list] : free)
      for (void* p : list) std::free(p);
    free.clear();
    held_bytes = 0;
  }
};

/// The arena serving this thread's Cpu tensors (null: the heap).
inline std::shared_ptr<ArenaPool>& current_arena() {
  thread_local std::shared_ptr<ArenaPool> pool;
  return pool;
}

/// Owning handle of one pooled buffer; returns it to its pool when destroyed.
class PooledBuffer {
 public:
  PooledBuffer() = default;
  PooledBuffer(void* p, std::size_t bytes, std::shared_ptr<ArenaPool> pool)
      : p_(p), bytes_(bytes), pool_(std::move(pool)) {}
  PooledBuffer(PooledBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), pool_(std::move(o.pool_)) {}
  PooledBuffer& operator=(PooledBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
      pool_ = std::move(o.pool_);
    }
    return *this;
  }
  PooledBuffer(const PooledBuffer&) = delete;
  PooledBuffer& operator=(const PooledBuffer&) = delete;
  ~PooledBuffer() { release(); }

  void* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }
  void release() noexcept {
    if (p_) pool_->give(p_, bytes_);
    p_ = nullptr;
    bytes_ = 0;
    pool_.reset();
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
  std::shared_ptr<ArenaPool> pool_;
};

/// A buffer of at least `bytes` from the arena in scope on this thread; empty when there is none (or bytes = 0).
inline PooledBuffer pooled_buffer(std::size_t bytes) {
  const std::shared_ptr<ArenaPool>& pool = current_arena();
  if (!pool || bytes == 0) return {};
  const std::size_t rounded = (bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
  return PooledBuffer(pool->take(rounded), rounded, pool);
}
}  // namespace detail

/// A pool of Cpu tensor buffers, reused by size. Cheap to construct; copies start empty.
class Arena {
 public:
  struct Stats {
    long long reused = 0;       ///< requests served from a buffer freed earlier
    long long allocated = 0;    ///< requests that had to allocate (warm-up, or a size not seen before)
    long long released = 0;     ///< freed buffers given back to the heap (holding them would exceed the peak)
    std::size_t held_bytes = 0; ///< freed buffers kept for reuse
    std::size_t live_bytes = 0; ///< buffers in tensors now
  };
  Arena() : pool_(std::make_shared<detail::ArenaPool>()) {}
  Arena(const Arena&) : Arena() {}
  Arena& operator=(const Arena&) { return *this; }
  Arena(Arena&&) noexcept = default;
  Arena& operator=(Arena&&) noexcept = default;

  Stats stats() const {
    std::lock_guard<std::mutex> lock(pool_->mu);
    return {pool_->reused, pool_->allocated, pool_->released, pool_->held_bytes, pool_->live_bytes};
  }
  /// At most `bytes` of freed buffers are held for reuse (the rest go back to the heap); 0 restores the default, four
  /// times the most that was ever live at once, at least 64 MiB.
  void set_limit(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(pool_->mu);
    pool_->limit = bytes;
  }
  /// Frees the buffers held for reuse (those in live tensors come back later and are kept then).
  void trim() {
    std::lock_guard<std::mutex> lock(pool_->mu);
    pool_->release_held();
  }

 private:
  friend class ArenaScope;
  std::shared_ptr<detail::ArenaPool> pool_;
};

/// While alive, Cpu tensors made on this thread take their buffers from `arena` (scopes nest; the previous one
/// is restored when this one ends).
class [[nodiscard]] ArenaScope {
 public:
  explicit ArenaScope(Arena& arena) : prev_(std::move(detail::current_arena())) {
    detail::current_arena() = arena.pool_;
  }
  ~ArenaScope() { detail::current_arena() = std::move(prev_); }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  std::shared_ptr<detail::ArenaPool> prev_;
};

}  // namespace biflow::cpu
