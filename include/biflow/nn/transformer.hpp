#pragma once
// Pre-norm transformer layer: h = x + Attn(LN(x)); y = h + MLP(LN(h)) with MLP = Linear(C -> r·C) → GELU →
// Linear(r·C -> C). Parameter names: "attn_norm", "attn.qkv", "attn.proj", "mlp_norm", "mlp.0", "mlp.2".
#include <vector>

#include "attention.hpp"
#include "layer_norm.hpp"
#include "mlp.hpp"

namespace biflow {

template <Backend B>
class TransformerLayer {
 public:
  using backend = B;
  using T = typename B::scalar;
  struct Context {
    typename LayerNorm<B>::Context n1, n2;
    typename Attention<B>::Context attn;
    typename MLP<B, act::GELU>::Context mlp;
  };

  TransformerLayer() = default;
  TransformerLayer(long width, long heads, long seq_len, bool causal, Rng& rng, double mlp_ratio = 4.0)
      : attn_norm(width), attn(width, heads, seq_len, causal, rng), mlp_norm(width),
        mlp({width, long(double(width) * mlp_ratio), width}, rng) {}

  long in_features() const { return attn.in_features(); }
  long out_features() const { return attn.out_features(); }

  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return forward(Tensor<B>(x), ctx); }
  /// Each residual input moves into its LayerNorm's context and is read back from there for the add.
  Tensor<B> forward(Tensor<B>&& x, Context& ctx) const {
    Tensor<B> h = attn.forward(attn_norm.forward(std::move(x), ctx.n1), ctx.attn);
    add_inplace(h, ctx.n1.x);
    Tensor<B> y = mlp.forward(mlp_norm.forward(std::move(h), ctx.n2), ctx.mlp);
    add_inplace(y, ctx.n2.x);
    return y;
  }
  Tensor<B> forward(const Tensor<B>& x) const {
    Tensor<B> h = attn.forward(attn_norm.forward(x));
    add_inplace(h, x);
    Tensor<B> y = mlp.forward(mlp_norm.forward(h));
    add_inplace(y, h);
    return y;
  }
  /// The residual path carries dy to x whatever the mode, so every sublayer computes its input gradient;
  /// params_only only lets this layer return no dx.
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    const GradMode m = inner(mode);
    Tensor<B> dh = mlp_norm.backward(ctx.n2, mlp.backward(ctx.mlp, dy, m), m);
    add_inplace(dh, dy);
    if (!wants_input_grad(mode)) {
      attn_norm.backward(ctx.n1, attn.backward(ctx.attn, dh, m), m);
      return {};
    }
    Tensor<B> dx = attn_norm.backward(ctx.n1, attn.backward(ctx.attn, dh, m), m);
    add_inplace(dx, dh);
    return dx;
  }
  /// One decoding step for the next token of each sequence (batch x width), using and extending cache.
  Tensor<B> step(const Tensor<B>& x, KVCache<B>& cache) const {
    Tensor<B> h = attn.step(attn_norm.forward(x), cache);
    add_inplace(h, x);
    Tensor<B> y = mlp.forward(mlp_norm.forward(h));
    add_inplace(y, h);
    return y;
  }

  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    attn_norm.visit_parameters(v, join_name(prefix, "attn_norm"));
    attn.visit_parameters(v, join_name(prefix, "attn"));
    mlp_norm.visit_parameters(v, join_name(prefix, "mlp_norm"));
    mlp.visit_parameters(v, join_name(prefix, "mlp"));
  }

  LayerNorm<B> attn_norm;
  Attention<B> attn;
  LayerNorm<B> mlp_norm;
  MLP<B, act::GELU> mlp;
};

}  // namespace biflow
