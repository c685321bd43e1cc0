#pragma once
// Told during a backward pass that some parameter gradients are final. Composites (Sequential, Repeat, TarFlow,
// ReverseModel) call done(child) right after a child's backward when nothing later in the pass adds to that child's
// gradients — its parameters are its own, not shared with a sibling or read again by an earlier layer. Data-parallel
// training (dist/data_parallel.hpp) uses it to start the all-reduce of those gradients while the backward goes on.
// It is passed explicitly to backward (a null pointer, the default, costs nothing) and knows nothing of
// communication: it maps a child to the range its gradients occupy in one flat buffer and calls a function.
#include <algorithm>
#include <concepts>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>

#include "parameter.hpp"

namespace biflow {

template <class B>
class GradientReady {
 public:
  using Scalar = typename B::scalar;
  /// The gradients live in one flat buffer of n values at `base` (train/flat_parameters.hpp); on_ready(begin, end)
  /// hears that values [begin, end) of it are final.
  GradientReady(const Scalar* base, long n, std::function<void(long, long)> on_ready)
      : base_(base), n_(n), on_ready_(std::move(on_ready)) {}
  GradientReady(const GradientReady&) = delete;
  GradientReady& operator=(const GradientReady&) = delete;

  /// child's parameter gradients are final for this pass. Parameters outside the flat buffer are ignored; a child
  /// without parameters in it reports nothing. The range is found once per child (it is cached by address).
  template <HasParameters M>
  void done(M& child) const {
    auto it = ranges_.find(static_cast<const void*>(&child));
    if (it == ranges_.end()) it = ranges_.emplace(static_cast<const void*>(&child), range_of(child)).first;
    const auto [begin, end] = it->second;
    if (begin < end) on_ready_(begin, end);
  }

 private:
  template <class M>
  std::pair<long, long> range_of(M& child) const {
    long lo = n_, hi = 0;
    // Only backends with a flat buffer (tensors with data(): Cpu, Cuda) have anything to report.
    if constexpr (requires(const Tensor<B>& t) { { t.data() } -> std::convertible_to<const Scalar*>; }) {
      child.visit_parameters([&](const std::string&, Parameter<B>& p) {
        if (p.grad.size() == 0) return;
        const Scalar* d = p.grad.data();
        if (d < base_ || d >= base_ + n_) return;
        const long off = long(d - base_);
        lo = std::min(lo, off);
        hi = std::max(hi, off + long(p.grad.size()));
      }, "");
    }
    return {lo, hi};
  }
  const Scalar* base_;
  long n_;
  std::function<void(long, long)> on_ready_;
  mutable std::unordered_map<const void*, std::pair<long, long>> ranges_;
};

/// Calls l.backward(args..., ready) when l's backward takes a GradientReady, else l.backward(args...).
template <class L, class B, class... Args>
decltype(auto) backward_with_ready(L& l, const GradientReady<B>* ready, Args&&... args) {
  if constexpr (requires { l.backward(std::forward<Args>(args)..., ready); })
    return l.backward(std::forward<Args>(args)..., ready);
  else
    return l.backward(std::forward<Args>(args)...);
}

}  // namespace biflow
