#pragma once
// Maximum-likelihood objective for a flow with a standard-normal base.
#include <cmath>
#include <numbers>

#include "../flow/distribution.hpp"

namespace biflow {

namespace fn {
struct NllRow {  // ½Σz² + D/2 log 2π − logdet, per row
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T q, T ld) const { return q + T(c) - ld; }
};
}  // namespace fn

/// Mean negative log-likelihood (nats per sample) of the batch; runs forward and backward, accumulating
/// parameter gradients. Returns the loss as a host double.
template <ForwardFlowLayer F>
double nll_forward_backward(F& flow, const Tensor<typename F::backend>& x, const Tensor<typename F::backend>& cond = {}) {
  using B = typename F::backend;
  typename F::Context ctx;
  const FlowOut<B> o = flow.forward(x, ctx, cond, logdet::analytic);
  const double n = double(x.rows());
  const Tensor<B> per_row = zip(fn::NllRow{0.5 * double(x.cols()) * std::log(2 * std::numbers::pi)},
                                row_sum(zip(fn::HalfSq{}, o.y)), o.logdet);
  const double loss = double(sum(per_row)) / n;
  // d loss / dz = z / n;  d loss / d logdet = -1 / n.
  // x is data: parameter gradients only (the first layer skips its input-gradient work).
  flow.backward(ctx, zip(fn::Scale{1.0 / n}, o.y), constant<B>(x.rows(), 1, typename B::scalar(-1.0 / n)),
                GradMode::params_only);
  return loss;
}

/// Mean NLL without gradients.
template <ForwardFlowLayer F>
double nll(const F& flow, const Tensor<typename F::backend>& x, const Tensor<typename F::backend>& cond = {}) {
  return -double(sum(log_prob(flow, x, cond))) / double(x.rows());
}

}  // namespace biflow
