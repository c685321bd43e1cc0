#pragma once
// TARFlow model: patchify, then B TarBlocks with alternating token order (block i reversed when i is odd),
// assembled with the core's compile-time composition Sequential<Permutation, Repeat<dynamic, TarBlock>>.
// data (C x H x W rows) -> noise (T·D token-major rows). Class-conditional when num_classes > 0 (context:
// one-hot rows with a null label in the last column, see data::class_condition).
#include <cstdint>
#include <vector>

#include "../flow/patchify.hpp"
#include "../flow/score.hpp"
#include "../flow/sequential.hpp"
#include "../flow/tarflow_block.hpp"

namespace biflow {

struct TarFlowConfig {
  ImageShape image{1, 8, 8, 2, PatchOrder::channel_major};
  long width = 64;   ///< transformer width
  long blocks = 4;   ///< B flow blocks
  long layers = 2;   ///< transformer layers per block
  long heads = 4;    ///< attention heads (head dim = width / heads)
  double mlp_ratio = 4.0;
  long num_classes = 0;      ///< 0 = unconditional
  double alpha_clamp = 0.0;  ///< soft clamp c on α (STARFlow uses 4); <= 0: off
  long cond_features() const { return num_classes > 0 ? num_classes + 1 : 0; }
};

template <Backend B>
class TarFlow : public FlowLayerBase<TarFlow<B>, B> {
 public:
  static constexpr const char* layer_name = "TarFlow";
  using Block = TarBlock<B>;
  using Blocks = Repeat<dynamic, Block>;
  using Flow = Sequential<Permutation<B>, Blocks>;
  using Context = typename Flow::Context;

  TarFlow() = default;
  TarFlow(const TarFlowConfig& c, Rng& rng) : cfg_(c) {
    c.image.validate();
    if (c.blocks <= 0) throw usage_error(detail::cat("TarFlow: need at least one block, got ", c.blocks));
    const typename Block::Config bc{c.image.tokens(), c.image.token_dim(), c.width, c.layers, c.heads,
                                    c.cond_features(), c.mlp_ratio, c.alpha_clamp};
    flow_ = Flow(make_patchify<B>(c.image), Blocks(std::size_t(c.blocks), [&](std::size_t i) {
                   return Block(bc, i % 2 ? Block::reversed_order(bc.tokens) : Block::identity_order(bc.tokens), rng);
                 }));
  }

  const TarFlowConfig& config() const { return cfg_; }
  long features() const { return cfg_.image.features(); }
  long cond_features() const { return cfg_.cond_features(); }
  std::size_t blocks() const { return layer<1>(flow_).blocks(); }
  Block& block(std::size_t i) { return layer<1>(flow_).block(i); }
  const Block& block(std::size_t i) const { return layer<1>(flow_).block(i); }
  const Permutation<B>& patchify() const { return layer<0>(flow_); }

  template <LogDetPolicy P>
  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, const P& policy) const {
    return seq_detail::child_forward(flow_, x, ctx, cond, policy);
  }
  /// states[0] = patchified x, states[i + 1] = output of block i (states.back() = z), plus the total log-det:
  /// the trajectory a learned reverse model trains against.
  Trajectory<B> forward_trajectory(const Tensor<B>& x, Context& ctx, const Tensor<B>& cond = {}) const {
    this->check_inputs("forward_trajectory", x, cond);
    const Tensor<B> tokens = patchify().forward(x, std::get<0>(ctx), cond, logdet::none).y;
    return layer<1>(flow_).forward_trajectory(tokens, std::get<1>(ctx), cond);
  }
  /// Inference trajectory (a frozen F): states only, no contexts kept.
  Trajectory<B> forward_trajectory(const Tensor<B>& x, const Tensor<B>& cond = {}) const {
    this->check_inputs("forward_trajectory", x, cond);
    return layer<1>(flow_).forward_trajectory(patchify().forward(x, cond, logdet::none).y, cond);
  }
  template <LogDetPolicy P>
  FlowOut<B> inverse_impl(const Tensor<B>& z, const Tensor<B>& cond, const P& policy) const {
    return seq_detail::child_inverse(flow_, z, cond, policy, seq_detail::NoOption{});
  }
  /// The exact inverse is KV-cached decoding through the blocks in reverse, B·(T − 1) sequential steps;
  /// `inverse(z, cond, Guidance<B>{w, anneal, uncond})` adds classifier-free guidance, handed by the composition
  /// to every block; returns images (C x H x W rows).
  template <LogDetPolicy P, class Opt>
    requires TakesInverseOption<Flow, Opt>
  FlowOut<B> inverse_impl(const Tensor<B>& z, const Tensor<B>& cond, const P& policy, const Opt& opt) const {
    return seq_detail::child_inverse(flow_, z, cond, policy, opt);
  }
  /// `ready` (data-parallel training): told block by block that gradients are final.
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all, const GradientReady<B>* ready = nullptr) {
    return flow_.backward(ctx, dy, dlogdet, mode, ready);
  }

  /// The inverse without KV cache (O(T²) transformer passes per block): the reference the cached decode is
  /// tested against.
  FlowOut<B> inverse_uncached(const Tensor<B>& z, const Tensor<B>& cond = {}, const Guidance<B>& g = {}) const {
    return this->inverse(z, cond, UncachedDecode<B>{g});
  }
  [[deprecated("biflow 0.3: TarFlow::sample(z, cond, g, want_logdet) is now inverse(z, cond, g, policy); "
               "sample(flow, n, rng) draws its own noise")]]
  FlowOut<B> sample(const Tensor<B>& z, const Tensor<B>& cond = {}, const Guidance<B>& g = {},
                    bool want_logdet = true) const {
    return want_logdet ? this->inverse(z, cond, g, logdet::analytic) : this->inverse(z, cond, g, logdet::none);
  }
  [[deprecated("biflow 0.3: TarFlow::sample_uncached is now inverse_uncached")]]
  FlowOut<B> sample_uncached(const Tensor<B>& z, const Tensor<B>& cond = {}, const Guidance<B>& g = {}) const {
    return inverse_uncached(z, cond, g);
  }

  /// Parameters named "blocks.{i}.proj_in.weight", "blocks.{i}.layers.{k}.attn.qkv.weight", … (the
  /// patchify permutation has none).
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    for (std::size_t i = 0; i < blocks(); ++i) block(i).visit_parameters(v, join_name(prefix, "blocks." + std::to_string(i)));
  }
  /// "patchify.permutation" and each block's token order "blocks.{i}.order".
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    layer<0>(flow_).visit_buffers(v, join_name(prefix, "patchify"));
    for (std::size_t i = 0; i < blocks(); ++i) block(i).visit_buffers(v, join_name(prefix, "blocks." + std::to_string(i)));
  }

 private:
  TarFlowConfig cfg_;
  Flow flow_;
};

}  // namespace biflow
