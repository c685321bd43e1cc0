#pragma once
// Learned embedding table applied to one-hot (or any soft) rows: y = onehot · W, W of shape
// (entries x width) as torch.nn.Embedding's "weight". Taking one-hot rows instead of integer ids keeps
// labels an ordinary tensor context, lets label dropout be a data-side choice, and makes a "mean of the
// class embeddings" unconditional context just another row.
#include "module.hpp"

namespace biflow {

template <Backend B>
class Embedding {
 public:
  using backend = B;
  using T = typename B::scalar;
  struct Context {
    Tensor<B> x;
  };
  Embedding() = default;
  /// Entries drawn from N(0, init_std²).
  Embedding(long entries, long width, Rng& rng, double init_std = 0.02) : n_(entries), w_(width) {
    if (entries <= 0 || width <= 0)
      throw usage_error(detail::cat("Embedding: sizes must be positive, got ", entries, " x ", width));
    Tensor<B> t(entries, width, uninit);
    fill_normal(t, rng, T(0), T(init_std));
    weight = Parameter<B>(std::move(t));
  }
  long in_features() const { return n_; }
  long out_features() const { return w_; }
  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const {
    require_cols("Embedding.forward (one-hot rows)", x, n_);
    ctx.x = x;
    return matmul(x, false, weight.value, false);
  }
  Tensor<B> forward(const Tensor<B>& x) const {
    require_cols("Embedding.forward (one-hot rows)", x, n_);
    return matmul(x, false, weight.value, false);
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    require_shape("Embedding.backward", dy, ctx.x.rows(), w_);
    if (wants_grad(mode, weight)) gemm(ctx.x, true, dy, false, weight.grad, T(1), T(1));
    if (!wants_input_grad(mode)) return {};
    return matmul(dy, false, weight.value, true);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "weight"), weight);
  }
  Parameter<B> weight;

 private:
  long n_ = 0, w_ = 0;
};

}  // namespace biflow
