#pragma once
// Variational (reverse-KL) training of a flow against an unnormalised log-density p̃. The flow is the sampler: its
// forward maps base noise to the target's space, x = F(ε), ε ~ N(0, I), so
//   log q(x) = log N(ε) − log|det ∂F/∂ε|,   ELBO = E_ε[log p̃(F(ε)) − log q(F(ε))] = log Z − KL(q ‖ p).
// Gradients are reparameterised: backward through F with ∂/∂x = −∇log p̃(x)/n and ∂/∂logdet = −1/n. Forward-only
// layers (planar, radial, Sylvester) qualify, and so does every other flow layer (read as a sampler).
// estimate() gives the ELBO, the importance-weighted log Z estimate log mean exp(log p̃ − log q) (a lower bound in
// expectation, tight when q = p/Z) and the effective sample size fraction (Σw)²/(nΣw²) of the weights.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../flow/distribution.hpp"
#include "../train/optimization.hpp"
#include "target.hpp"

namespace biflow::vi {

/// What the flow's samples say about the target: ELBO (± its standard error), log Z estimate, ESS fraction.
struct Estimate {
  double elbo = 0, elbo_stderr = 0;  ///< mean of log w = log p̃(x) − log q(x), and its standard error
  double log_z = 0;                  ///< log mean exp(log w): importance-weighted estimate of log Z
  double ess_fraction = 0;           ///< (Σw)² / (n·Σw²) ∈ (0, 1]: 1 when q ∝ p̃
  long samples = 0;
  long nonfinite = 0;                ///< samples whose log w was NaN or ±inf (left out of every figure above)
};

/// The Estimate of n samples from the flow (chunks of `chunk` rows; nothing is trained).
template <ForwardFlowLayer F, class P>
  requires UnnormalizedDensity<P, typename F::backend>
Estimate estimate(const F& flow, const P& target, long n, Rng& rng, long chunk = 4096) {
  using B = typename F::backend;
  if (n <= 0) throw usage_error(detail::cat("vi::estimate: needs at least one sample, got ", n));
  std::vector<double> lw;
  lw.reserve(std::size_t(n));
  Estimate e;
  for (long done = 0; done < n; done += chunk) {
    const long m = std::min(chunk, n - done);
    const ForwardSample<B> s = forward_sample_and_log_prob(flow, m, rng);
    const HostMatrix<double> lp = to_host(target.log_prob_and_grad(s.x).log_prob).template cast<double>();
    const HostMatrix<double> lq = to_host(s.log_q).template cast<double>();
    for (long i = 0; i < m; ++i) {
      const double v = lp(i, 0) - lq(i, 0);
      if (std::isfinite(v)) lw.push_back(v);
      else ++e.nonfinite;
    }
  }
  e.samples = long(lw.size());
  if (lw.empty()) {
    e.elbo = e.log_z = -std::numeric_limits<double>::infinity();
    return e;
  }
  double mean = 0;
  for (double v : lw) mean += v;
  mean /= double(lw.size());
  double var = 0;
  for (double v : lw) var += (v - mean) * (v - mean);
  var /= double(std::max<std::size_t>(1, lw.size() - 1));
  const double mx = *std::max_element(lw.begin(), lw.end());
  double s1 = 0, s2 = 0;  // Σ w and Σ w² relative to e^max
  for (double v : lw) {
    s1 += std::exp(v - mx);
    s2 += std::exp(2 * (v - mx));
  }
  e.elbo = mean;
  e.elbo_stderr = std::sqrt(var / double(lw.size()));
  e.log_z = mx + std::log(s1 / double(lw.size()));
  e.ess_fraction = s1 * s1 / (double(lw.size()) * s2);
  return e;
}

/// Reverse-KL training: each step draws `samples` base points, maps them through the flow's forward, and minimises
/// the negative ELBO (the StepResult's loss) with the optimiser every trainer shares (clipping, NaN guard, AdamW,
/// schedule, EMA).
template <ForwardFlowLayer F, class P>
  requires UnnormalizedDensity<P, typename F::backend>
class ElboTrainer {
 public:
  using B = typename F::backend;
  using T = typename B::scalar;
  ElboTrainer(F& flow, const P& target, TrainOptions o, long samples = 256)
      : flow_(flow), target_(target), opt_(o, "lower the learning rate or use more samples per step"), n_(samples) {
    if (samples <= 0) throw usage_error(detail::cat("ElboTrainer: samples per step must be positive, got ", samples));
    if (target.features() != flow.features())
      throw shape_error(detail::cat("ElboTrainer: the target has ", target.features(), " features, the flow ",
                                    flow.features()));
  }
  /// One optimisation step: negative_elbo_backward, then the shared optimiser step.
  StepResult step(Rng& rng) {
    const auto memory = opt_.step_scope();
    return opt_.step(flow_, negative_elbo_backward(rng));
  }
  /// Zeroes the gradients, draws a batch, and leaves ∂(−ELBO)/∂θ of that batch in the flow's gradients; returns
  /// the batch's −ELBO. No parameter changes (the gradient a step would take, e.g. to check it).
  double negative_elbo_backward(Rng& rng) {
    zero_grad(flow_);
    const Tensor<B> eps = StandardNormal::sample<B>(n_, flow_.features(), rng);
    typename F::Context ctx;
    const FlowOut<B> o = flow_.forward(eps, ctx, {}, logdet::analytic);
    const LogDensityGrad<B> t = target_.log_prob_and_grad(o.y);
    Tensor<B> lq = StandardNormal::log_prob(eps);
    if (!o.logdet.empty()) map(lq, fn::Sub{}, lq, o.logdet);
    const double n = double(n_);
    const double loss = (double(sum(lq)) - double(sum(t.log_prob))) / n;  // −ELBO of this batch
    // ε is noise, not a parameter: parameter gradients only.
    flow_.backward(ctx, zip(fn::Scale{-1.0 / n}, t.grad), constant<B>(n_, 1, T(-1.0 / n)), GradMode::params_only);
    return loss;
  }
  long samples_per_step() const { return n_; }
  long steps() const { return opt_.steps(); }
  long skipped_steps() const { return opt_.skipped_steps(); }
  Optimization<B>& optimization() { return opt_; }

 private:
  F& flow_;
  P target_;  // a copy: a temporary target (ElboTrainer(flow, vi::targets::banana(), o)) must not dangle
  Optimization<B> opt_;
  long n_;
};

}  // namespace biflow::vi
