#pragma once
// A forward flow F and its learned reverse model G side by side. F's trajectory lives in F's "state space"
// (for TarFlow: patchified tokens; for other flows: the data itself); G works in that space too, and these
// helpers move between it and the data space users and distances see.
#include "../flow/flow_layer.hpp"
#include "reverse_model.hpp"

namespace biflow {

/// State-space rows (x⁰ of F's trajectory) -> data rows: unpatchify for flows that patchify, else identity.
template <class Flow, Backend B>
Tensor<B> to_data(const Flow& f, const Tensor<B>& states) {
  if constexpr (requires { f.patchify(); }) return f.patchify().inverse(states, {}, logdet::none).y;
  else return states;
}
/// Data rows -> state-space rows (the inverse of to_data). Also maps data-space gradients to state space:
/// both are permutations, and a permutation's transpose is its inverse.
template <class Flow, Backend B>
Tensor<B> to_states(const Flow& f, const Tensor<B>& data) {
  if constexpr (requires { f.patchify(); }) {
    return f.patchify().forward(data, Tensor<B>{}, logdet::none).y;
  } else {
    return data;
  }
}

/// F and G side by side (references; neither is modified). Members are named for what they are — `flow` (F) and
/// `reverse_model` (G) — so a forward pass reads `bf.flow.forward(x)`.
template <class Flow, class G>
struct BiFlow {
  using B = typename Flow::backend;
  static_assert(std::is_same_v<B, typename G::backend>, "BiFlow: F and G must use the same backend");
  const Flow& flow;         ///< F (frozen)
  const G& reverse_model;   ///< G, the learned inverse

  /// One-pass generation in data space from given noise z (N x features), optional context and guidance scales
  /// w (N x 1, training-time CFG; G must be built with `guidance`).
  Tensor<B> generate(const Tensor<B>& z, const Tensor<B>& cond = {}, const Tensor<B>& w = {}) const {
    return to_data(flow, reverse_model.generate(z, cond, w));
  }
  /// Inference-time CFG on G (two passes as one 2N batch).
  Tensor<B> generate_guided(const Tensor<B>& z, const Tensor<B>& cond, double w) const {
    return to_data(flow, reverse_model.generate_guided(z, cond, w));
  }
  /// n samples: noise drawn from N(0, I) with rng, then one pass of G (what sample(flow, n, rng) is for F).
  Tensor<B> sample(long n, Rng& rng, const Tensor<B>& cond = {}, const Tensor<B>& w = {}) const {
    Tensor<B> z(n, flow.features(), uninit);
    fill_normal(z, rng);
    return generate(z, cond, w);
  }
  /// G(F(x)): how well G inverts F on data x.
  Tensor<B> reconstruct(const Tensor<B>& x, const Tensor<B>& cond = {}) const {
    const Tensor<B> z = flow.forward(x, cond, logdet::none).y;
    return generate(z, cond, reverse_model.config().guidance ? Tensor<B>(x.rows(), 1) : Tensor<B>{});
  }
};
template <class Flow, class G>
BiFlow(const Flow&, const G&) -> BiFlow<Flow, G>;

}  // namespace biflow
