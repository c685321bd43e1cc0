#pragma once
// Stage bodies of the learned reverse model: what one reverse stage does to the (N·T x width) token rows.
//   TransformerStage  K *bidirectional* pre-norm transformer layers (images / latents: every token sees
//                     every token, so the whole inverse is one parallel pass)
//   MlpStage          K pre-norm residual MLP blocks x + MLP(LN(x)) (vector data, T = 1: attention over one
//                     token is a no-op)
// Both are nn Modules built from a StageShape; write your own stage the same way.
#include <vector>

#include "../nn/layer_norm.hpp"
#include "../nn/mlp.hpp"
#include "../nn/module.hpp"
#include "../nn/stack.hpp"
#include "../nn/transformer.hpp"

namespace biflow {

struct StageShape {
  long tokens = 1;   ///< T (sequence length seen by attention)
  long width = 64;   ///< hidden width C
  long layers = 1;   ///< K layers / blocks in the stage
  long heads = 4;    ///< attention heads (transformer stages)
  double mlp_ratio = 4.0;
};

template <Backend B>
class TransformerStage {
 public:
  using backend = B;
  using Context = typename Stack<TransformerLayer<B>>::Context;
  TransformerStage() = default;
  TransformerStage(const StageShape& s, Rng& rng) : width_(s.width) {
    if (s.layers <= 0) throw usage_error(detail::cat("TransformerStage: need at least one layer, got ", s.layers));
    layers = Stack<TransformerLayer<B>>(std::size_t(s.layers), [&](std::size_t) {
      return TransformerLayer<B>(s.width, s.heads, s.tokens, false, rng, s.mlp_ratio);
    });
  }
  long in_features() const { return width_; }
  long out_features() const { return width_; }
  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return layers.forward(x, ctx); }
  Tensor<B> forward(const Tensor<B>& x) const { return layers.forward(x); }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    return layers.backward(ctx, dy, mode);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    layers.visit_parameters(v, join_name(prefix, "layers"));
  }
  Stack<TransformerLayer<B>> layers;  ///< bidirectional layers ("layers.{l}.…")

 private:
  long width_ = 0;
};

template <Backend B>
class MlpStage {
 public:
  using backend = B;
  struct Context {
    std::vector<typename LayerNorm<B>::Context> norm;
    std::vector<typename MLP<B, act::GELU>::Context> mlp;
  };
  MlpStage() = default;
  MlpStage(const StageShape& s, Rng& rng) : width_(s.width) {
    if (s.layers <= 0) throw usage_error(detail::cat("MlpStage: need at least one block, got ", s.layers));
    for (long l = 0; l < s.layers; ++l) {
      norms.emplace_back(s.width);
      mlps.emplace_back(std::vector<long>{s.width, long(double(s.width) * s.mlp_ratio), s.width}, rng);
    }
  }
  long in_features() const { return width_; }
  long out_features() const { return width_; }
  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const {
    ctx.norm.resize(norms.size());
    ctx.mlp.resize(mlps.size());
    Tensor<B> h = x;
    for (std::size_t l = 0; l < norms.size(); ++l) {
      Tensor<B> y = mlps[l].forward(norms[l].forward(h, ctx.norm[l]), ctx.mlp[l]);
      add_inplace(y, h);
      h = std::move(y);
    }
    return h;
  }
  Tensor<B> forward(const Tensor<B>& x) const {
    Tensor<B> h = x;
    for (std::size_t l = 0; l < norms.size(); ++l) {
      Tensor<B> y = mlps[l].forward(norms[l].forward(h));
      add_inplace(y, h);
      h = std::move(y);
    }
    return h;
  }
  /// Residual blocks: every block needs its input gradient; params_only only spares returning dx.
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    const GradMode m = inner(mode);
    Tensor<B> g = dy;
    for (std::size_t l = norms.size(); l-- > 0;) {
      Tensor<B> d = norms[l].backward(ctx.norm[l], mlps[l].backward(ctx.mlp[l], g, m), m);
      add_inplace(d, g);
      g = std::move(d);
    }
    if (!wants_input_grad(mode)) return {};
    return g;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    for (std::size_t l = 0; l < norms.size(); ++l) {
      norms[l].visit_parameters(v, join_name(prefix, "blocks." + std::to_string(l) + ".norm"));
      mlps[l].visit_parameters(v, join_name(prefix, "blocks." + std::to_string(l) + ".mlp"));
    }
  }
  std::vector<LayerNorm<B>> norms;
  std::vector<MLP<B, act::GELU>> mlps;

 private:
  long width_ = 0;
};

}  // namespace biflow
