#pragma once
#include "module.hpp"

namespace biflow {

/// Row-wise LayerNorm over the features, as torch.nn.LayerNorm(features): parameters "weight", "bias".
template <Backend B>
class LayerNorm {
 public:
  using backend = B;
  using T = typename B::scalar;
  struct Context {
    Tensor<B> x, mean, rstd;
  };
  LayerNorm() = default;
  explicit LayerNorm(long features, T eps = T(1e-5)) : n_(features), eps_(eps) {
    weight = Parameter<B>(constant<B>(1, features, T(1)));
    bias = Parameter<B>(Tensor<B>(1, features));
  }
  long in_features() const { return n_; }
  long out_features() const { return n_; }
  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return forward(Tensor<B>(x), ctx); }
  /// The input is kept for the backward: an rvalue moves into the context (a pre-norm transformer layer then
  /// reads its residual back from there instead of copying it).
  Tensor<B> forward(Tensor<B>&& x, Context& ctx) const {
    require_cols("LayerNorm.forward", x, n_);
    Tensor<B> y;
    ctx.x = std::move(x);
    layernorm_forward(ctx.x, weight.value, bias.value, eps_, y, ctx.mean, ctx.rstd);
    return y;
  }
  Tensor<B> forward(const Tensor<B>& x) const {
    require_cols("LayerNorm.forward", x, n_);
    Tensor<B> y, mean, rstd;
    layernorm_forward(x, weight.value, bias.value, eps_, y, mean, rstd);
    return y;
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    require_shape("LayerNorm.backward", dy, ctx.x.rows(), n_);
    const bool gw = wants_grad(mode, weight), gb = wants_grad(mode, bias);
    if (gw && gb) return layernorm_backward(ctx.x, weight.value, ctx.mean, ctx.rstd, dy, weight.grad, bias.grad);
    // The primitive computes both; a share nobody wants (two column sums) lands in scratch instead.
    Tensor<B> sw(weight.grad.rows(), weight.grad.cols()), sb(bias.grad.rows(), bias.grad.cols());
    return layernorm_backward(ctx.x, weight.value, ctx.mean, ctx.rstd, dy, gw ? weight.grad : sw,
                              gb ? bias.grad : sb);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "weight"), weight);
    v(join_name(prefix, "bias"), bias);
  }
  Parameter<B> weight, bias;

 private:
  long n_ = 0;
  T eps_ = T(1e-5);
};

}  // namespace biflow
