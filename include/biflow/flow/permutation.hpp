#pragma once
// Fixed feature permutation: y[:, j] = x[:, perm[j]]. Volume preserving (log-det 0), no parameters.
#include <algorithm>
#include <numeric>
#include <vector>

#include "flow_layer.hpp"

namespace biflow {

template <Backend B>
class Permutation : public FlowLayerBase<Permutation<B>, B> {
 public:
  static constexpr const char* layer_name = "Permutation";
  struct Context {};

  Permutation() = default;
  /// perm must hold each of 0..D-1 exactly once.
  explicit Permutation(std::vector<std::int32_t> perm) : perm_(std::move(perm)) {
    const long d = static_cast<long>(perm_.size());
    std::vector<std::int32_t> inv(perm_.size(), -1);
    for (long j = 0; j < d; ++j) {
      const auto p = perm_[j];
      if (p < 0 || p >= d || inv[p] != -1)
        throw usage_error(detail::cat("Permutation: entry ", j, " = ", p, " is out of range or repeated; expected a "
                                      "permutation of 0..", d - 1));
      inv[p] = static_cast<std::int32_t>(j);
    }
    fwd_ = make_indices<B>(perm_);
    inv_ = make_indices<B>(inv);
  }
  /// Reverses the feature order.
  static Permutation reverse(long d) {
    std::vector<std::int32_t> p(static_cast<std::size_t>(d));
    std::iota(p.rbegin(), p.rend(), 0);
    return Permutation(p);
  }
  /// A uniformly random permutation drawn from rng (Fisher-Yates; same seed, same permutation everywhere).
  static Permutation random(long d, Rng& rng) {
    std::vector<std::int32_t> p(static_cast<std::size_t>(d));
    std::iota(p.begin(), p.end(), 0);
    for (long i = d - 1; i > 0; --i) std::swap(p[i], p[rng.below(static_cast<std::uint64_t>(i + 1))]);
    return Permutation(p);
  }

  long features() const { return static_cast<long>(perm_.size()); }
  long cond_features() const { return 0; }
  const std::vector<std::int32_t>& indices() const { return perm_; }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context*, const Tensor<B>&, bool want_logdet) const {
    return {gather_cols(x, fwd_), want_logdet ? Tensor<B>(x.rows(), 1) : Tensor<B>{}};
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>&, bool want_logdet) const {
    return {gather_cols(y, inv_), want_logdet ? Tensor<B>(y.rows(), 1) : Tensor<B>{}};
  }
  Tensor<B> backward(const Context&, const Tensor<B>& dy, const Tensor<B>&, GradMode mode = GradMode::all) {
    require_cols("Permutation.backward", dy, features());
    if (!wants_input_grad(mode)) return {};
    return gather_cols(dy, inv_);
  }
  template <class V>
  void visit_parameters(V&&, const std::string&) {}
  /// The permutation is state: saved and checked on load ("permutation", I64 [D]).
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "permutation"), index_buffer(perm_, [this](std::vector<std::int32_t> p) {
        if (long(p.size()) != features())
          throw usage_error(detail::cat("Permutation: ", p.size(), " entries for ", features(), " features"));
        *this = Permutation(std::move(p));
      }));
  }

 private:
  std::vector<std::int32_t> perm_;
  Indices<B> fwd_, inv_;
};

}  // namespace biflow
