#pragma once
// Maximum-likelihood objective for a flow with a standard-normal base.
#include <cmath>
#include <numbers>
#include <type_traits>

#include "../flow/distribution.hpp"
#include "../nn/gradient_ready.hpp"

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
/// The log-det comes from `policy`: the closed forms (logdet::analytic), or a stochastic estimate for layers without
/// one (residual flows: logdet::russian_roulette gives an unbiased loss and gradient, logdet::hutchinson a biased
/// one) — then the returned loss is that estimate, not the exact NLL (evaluate with `nll` for that).
/// `ready` (data-parallel training) is handed to the flow's backward when it takes one.
/// This overload runs on a context the caller keeps (a trainer's, reused every step: its vectors and tensors are
/// rewritten, not made again).
template <ForwardFlowLayer F, LogDetPolicy P = logdet::Analytic>
double nll_forward_backward(F& flow, typename F::Context& ctx, const Tensor<typename F::backend>& x,
                            const Tensor<typename F::backend>& cond = {}, const P& policy = {},
                            const GradientReady<typename F::backend>* ready = nullptr) {
  static_assert(P::compute, "nll_forward_backward: the NLL needs the log-det; logdet::None computes none "
                            "(train with logdet::analytic or a stochastic policy)");
  static_assert(!std::is_same_v<P, logdet::BruteForce>, "nll_forward_backward: logdet::BruteForce is for verification "
                                                        "and has no gradient; train with logdet::analytic or a "
                                                        "stochastic policy");
  using B = typename F::backend;
  const FlowOut<B> o = flow.forward(x, ctx, cond, policy);
  const double n = double(x.rows());
  const Tensor<B> per_row = zip(fn::NllRow{0.5 * double(x.cols()) * std::log(2 * std::numbers::pi)},
                                row_sum(zip(fn::HalfSq{}, o.y)), o.logdet);
  const double loss = double(sum(per_row)) / n;
  // d loss / dz = z / n;  d loss / d logdet = -1 / n.
  // x is data: parameter gradients only (the first layer skips its input-gradient work).
  backward_with_ready(flow, ready, ctx, zip(fn::Scale{1.0 / n}, o.y),
                      constant<B>(x.rows(), 1, typename B::scalar(-1.0 / n)), GradMode::params_only);
  return loss;
}

template <ForwardFlowLayer F, LogDetPolicy P = logdet::Analytic>
double nll_forward_backward(F& flow, const Tensor<typename F::backend>& x, const Tensor<typename F::backend>& cond = {},
                            const P& policy = {}, const GradientReady<typename F::backend>* ready = nullptr) {
  typename F::Context ctx;
  return nll_forward_backward(flow, ctx, x, cond, policy, ready);
}

/// Mean NLL without gradients.
template <ForwardFlowLayer F>
double nll(const F& flow, const Tensor<typename F::backend>& x, const Tensor<typename F::backend>& cond = {}) {
  return -double(sum(log_prob(flow, x, cond))) / double(x.rows());
}

}  // namespace biflow
