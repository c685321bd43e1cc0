#pragma once
#include <vector>

#include "activation.hpp"
#include "linear.hpp"

namespace biflow {

/// Multi-layer perceptron: Linear → Act → … → Linear. Parameters are named as the equivalent
/// torch.nn.Sequential (Linear at even indices): "0.weight", "0.bias", "2.weight", …
/// `Lin` is Linear<B> or MaskedLinear<B> (MADE).
template <Backend B, class Act = act::ReLU, class Lin = Linear<B>>
class MLP {
 public:
  using backend = B;
  using T = typename B::scalar;
  struct Context {
    std::vector<typename Lin::Context> lin;
    std::vector<typename Activation<B, Act>::Context> act;
  };

  MLP() = default;
  /// sizes = {in, hidden..., out}; at least {in, out}.
  MLP(std::vector<long> sizes, Rng& rng) : sizes_(std::move(sizes)) {
    if (sizes_.size() < 2)
      throw usage_error(detail::cat("MLP: need at least input and output sizes, got ", sizes_.size(), " sizes"));
    for (std::size_t i = 0; i + 1 < sizes_.size(); ++i) {
      lin_.emplace_back(sizes_[i], sizes_[i + 1], rng);
      if (i + 2 < sizes_.size()) act_.emplace_back(sizes_[i + 1]);
    }
  }
  long in_features() const { return sizes_.front(); }
  long out_features() const { return sizes_.back(); }
  const std::vector<long>& sizes() const { return sizes_; }
  std::size_t num_linear() const { return lin_.size(); }
  Lin& linear(std::size_t i) { return lin_.at(i); }
  const Lin& linear(std::size_t i) const { return lin_.at(i); }
  /// Zero the last layer so the MLP starts by outputting 0 (flow layers start as the identity).
  void zero_last() { lin_.back().zero_init(); }

  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return forward(Tensor<B>(x), ctx); }
  Tensor<B> forward(Tensor<B>&& x, Context& ctx) const {
    ctx.lin.resize(lin_.size());
    ctx.act.resize(act_.size());
    Tensor<B> h = std::move(x);
    for (std::size_t i = 0; i + 1 < lin_.size(); ++i) {  // intermediate tensors move into the contexts
      if constexpr (Act::grad_from_output) {
        // Fused: one in-place pass adds the bias and applies the activation; its output is kept once, as the
        // next layer's input, and backward reads the activation's derivative from it.
        h = lin_[i].forward_unbiased(std::move(h), ctx.lin[i]);
        if (lin_[i].has_bias()) map(h, fn::BiasActValue<Act>{}, h, lin_[i].bias.value);
        else map(h, fn::ActValue<Act>{}, h);
      } else {
        h = act_[i].forward(lin_[i].forward(std::move(h), ctx.lin[i]), ctx.act[i]);
      }
    }
    return lin_.back().forward(std::move(h), ctx.lin.back());
  }
  /// Inference: the same fused passes, nothing kept.
  Tensor<B> forward(const Tensor<B>& x) const {
    Tensor<B> h;
    for (std::size_t i = 0; i + 1 < lin_.size(); ++i) {
      const Tensor<B>& in = i == 0 ? x : h;
      if constexpr (Act::grad_from_output) {
        Tensor<B> a = lin_[i].forward_unbiased(in);
        if (lin_[i].has_bias()) map(a, fn::BiasActValue<Act>{}, a, lin_[i].bias.value);
        else map(a, fn::ActValue<Act>{}, a);
        h = std::move(a);
      } else {
        h = act_[i].forward(lin_[i].forward(in));
      }
    }
    return lin_.back().forward(lin_.size() == 1 ? x : h);
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    const std::size_t n = lin_.size();
    Tensor<B> g = lin_.back().backward(ctx.lin.back(), dy, n == 1 ? mode : inner(mode));
    for (std::size_t i = n - 1; i-- > 0;) {
      if constexpr (Act::grad_from_output) map(g, fn::ActBackwardFromOutput<Act>{}, g, ctx.lin[i + 1].x);
      else g = act_[i].backward(ctx.act[i], g);
      g = lin_[i].backward(ctx.lin[i], g, i == 0 ? mode : inner(mode));
    }
    return g;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    for (std::size_t i = 0; i < lin_.size(); ++i) lin_[i].visit_parameters(v, join_name(prefix, std::to_string(2 * i)));
  }
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    for (std::size_t i = 0; i < lin_.size(); ++i) visit_buffers_of(lin_[i], v, join_name(prefix, std::to_string(2 * i)));
  }

 private:
  std::vector<long> sizes_;
  std::vector<Lin> lin_;
  std::vector<Activation<B, Act>> act_;
};

}  // namespace biflow
