#pragma once
// Standard-normal base distribution and the density / sampling of a flow built on it.
#include <cmath>
#include <numbers>

#include "flow_layer.hpp"

namespace biflow {

namespace fn {
struct HalfSq {  // 0.5*z^2
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T z) const { return T(0.5) * z * z; }
};
struct NormalLogProb {  // -(q + c) + ld  with q = ½Σz², c = D/2·log 2π
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T q, T ld) const { return -(q + T(c)) + ld; }
};
}  // namespace fn

/// N(0, I) in D dimensions.
struct StandardNormal {
  /// log N(z; 0, I) per row (rows x 1).
  template <class B>
  static Tensor<B> log_prob(const Tensor<B>& z) {
    const Tensor<B> zero(z.rows(), 1);
    return zip(fn::NormalLogProb{0.5 * double(z.cols()) * std::log(2 * std::numbers::pi)},
               row_sum(zip(fn::HalfSq{}, z)), zero);
  }
  template <class B>
  static Tensor<B> sample(long n, long d, Rng& rng) {
    Tensor<B> z(n, d);
    fill_normal(z, rng);
    return z;
  }
};

/// log p(x) of a flow with a standard-normal base, per row (rows x 1). Needs the forward direction only.
template <ForwardFlowLayer F>
Tensor<typename F::backend> log_prob(const F& flow, const Tensor<typename F::backend>& x,
                                     const Tensor<typename F::backend>& cond = {}) {
  const FlowOut<typename F::backend> o = flow.forward(x, cond, logdet::analytic);  // inference: nothing saved
  return zip(fn::NormalLogProb{0.5 * double(x.cols()) * std::log(2 * std::numbers::pi)},
             row_sum(zip(fn::HalfSq{}, o.y)), o.logdet);
}

/// n samples x = F⁻¹(z), z ~ N(0, I) at the given temperature (std of z). "sample" always draws its own noise;
/// to map given noise use flow.inverse(z, cond) (or G's generate(z, cond)).
template <FlowLayer F>
Tensor<typename F::backend> sample(const F& flow, long n, Rng& rng, const Tensor<typename F::backend>& cond = {},
                                   double temperature = 1.0) {
  using B = typename F::backend;
  Tensor<B> z = StandardNormal::sample<B>(n, flow.features(), rng);
  if (temperature != 1.0) map(z, fn::Scale{temperature}, z);
  return flow.inverse(z, cond, logdet::none).y;
}

/// Samples with their log-density under the flow.
template <class B>
struct SampleLogProb {
  Tensor<B> x;         ///< n x features
  Tensor<B> log_prob;  ///< n x 1: log p(x), the model's density at x
};
/// n samples and log p of each in one inverse pass: log p(x) = log N(z; 0, I) − log|det ∂x/∂z| with
/// x = F⁻¹(z). At a temperature ≠ 1 the noise is scaled, and log_prob is still the model's density at the x
/// returned (not the density of the tempered sampler).
template <FlowLayer F>
SampleLogProb<typename F::backend> sample_and_log_prob(const F& flow, long n, Rng& rng,
                                                       const Tensor<typename F::backend>& cond = {},
                                                       double temperature = 1.0) {
  using B = typename F::backend;
  Tensor<B> z = StandardNormal::sample<B>(n, flow.features(), rng);
  if (temperature != 1.0) map(z, fn::Scale{temperature}, z);
  FlowOut<B> o = flow.inverse(z, cond, logdet::analytic);
  Tensor<B> lp = StandardNormal::log_prob(z);
  if (!o.logdet.empty()) map(lp, fn::Sub{}, lp, o.logdet);  // empty: volume-preserving throughout
  return {std::move(o.y), std::move(lp)};
}

/// The flow read the other way, as a sampler (variational inference): x = F(ε) with ε ~ N(0, I), and
/// log q(x) = log N(ε; 0, I) − log|det ∂F/∂ε|. One forward pass, so it works for layers without an inverse (planar,
/// radial, Sylvester) and is the one-pass direction of MAF-structured layers (the IAF of Kingma et al. 2016 is a
/// MADE-affine layer used this way). `eps` is returned too: ElboTrainer's backward needs the training context, so it
/// calls forward itself; this is the inference version (nothing saved).
template <class B>
struct ForwardSample {
  Tensor<B> eps;       ///< n x features: the base noise
  Tensor<B> x;         ///< n x features: F(ε)
  Tensor<B> log_q;     ///< n x 1: log q(x) under the sampler
};
template <ForwardFlowLayer F>
ForwardSample<typename F::backend> forward_sample_and_log_prob(const F& flow, long n, Rng& rng,
                                                             const Tensor<typename F::backend>& cond = {}) {
  using B = typename F::backend;
  Tensor<B> eps = StandardNormal::sample<B>(n, flow.features(), rng);
  FlowOut<B> o = flow.forward(eps, cond, logdet::analytic);
  Tensor<B> lq = StandardNormal::log_prob(eps);
  if (!o.logdet.empty()) map(lq, fn::Sub{}, lq, o.logdet);
  return {std::move(eps), std::move(o.y), std::move(lq)};
}

}  // namespace biflow
