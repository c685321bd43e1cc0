#pragma once
// StepMemory<B>: what a trainer holds so that its steps reuse tensor memory instead of allocating it. On Cpu it is
// a cpu::Arena, opened around each step (cpu/arena.hpp); other backends get an empty scope (the Cuda tensor's
// stream-ordered pool already reuses device memory).
#include "tensor.hpp"

namespace biflow {

template <class B>
class StepMemory {
 public:
  struct Scope {};
  /// Tensors made while the returned object lives reuse this memory (nothing to do on this backend).
  Scope scope() { return {}; }
};

template <class T>
class StepMemory<Cpu<T>> {
 public:
  cpu::ArenaScope scope() { return cpu::ArenaScope(arena_); }
  cpu::Arena& arena() { return arena_; }
  const cpu::Arena& arena() const { return arena_; }

 private:
  cpu::Arena arena_;
};

}  // namespace biflow
