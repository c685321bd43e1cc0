#pragma once
// Score of a flow density and score-based denoising (Tweedie): for data trained with Gaussian noise σ,
// x ← x̃ + σ²·∇ₓ log p(x̃), one forward and one backward pass (through the input) of the flow.
#include "distribution.hpp"

namespace biflow {

/// ∇ₓ log p(x) per row, for a flow with a standard-normal base: backward with dz = −z, dlogdet = 1.
/// An input-only backward (GradMode::input_only): no weight-gradient work, the flow is not modified, so a
/// const flow will do.
template <FlowLayer F>
Tensor<typename F::backend> score(const F& flow, const Tensor<typename F::backend>& x,
                                  const Tensor<typename F::backend>& cond = {}) {
  using B = typename F::backend;
  typename F::Context ctx;
  const FlowOut<B> o = flow.forward(x, ctx, cond, logdet::analytic);
  return backward_input(flow, ctx, zip(fn::Neg{}, o.y), constant<B>(x.rows(), 1, typename B::scalar(1)));
}

/// x̃ + σ²·∇ₓ log p(x̃).
template <FlowLayer F>
Tensor<typename F::backend> denoise(const F& flow, const Tensor<typename F::backend>& x, double sigma,
                                    const Tensor<typename F::backend>& cond = {}) {
  const auto s = score(flow, x, cond);
  return zip(fn::Axpby{1.0, sigma * sigma}, x, s);
}

/// Bits per dimension of discrete data from the mean NLL (nats per sample) of its continuous, rescaled
/// version x = a·(v + u) + b (dequantised v, u ~ U[0,1)): NLL_v = NLL_x − dims·log a.
inline double bits_per_dim(double nll_nats, long dims, double a = 1.0) {
  return (nll_nats - double(dims) * std::log(a)) / (double(dims) * std::log(2.0));
}

}  // namespace biflow
