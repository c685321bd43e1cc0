#pragma once
// Maximum-likelihood training of a flow: the NLL's forward and backward, then the optimiser step every trainer
// shares (optimization.hpp: clipping, NaN/Inf guard, schedule, AdamW, EMA, counters).
#include <cmath>
#include <cstdio>
#include <string>

#include "nll.hpp"
#include "optimization.hpp"

namespace biflow {

/// Maximum likelihood: zero the gradients, NLL forward + backward, then the shared optimiser step.
/// P is the log-det policy of the training forward (nll.hpp): logdet::analytic, or a stochastic estimate such as
/// `MleTrainer t(flow, o, logdet::russian_roulette(rng))` for residual flows (the loss reported is then the estimate).
template <ForwardFlowLayer F, LogDetPolicy P = logdet::Analytic>
class MleTrainer {
 public:
  using B = typename F::backend;
  using Counters = typename Optimization<B>::Counters;
  MleTrainer(F& flow, TrainOptions o, P policy = {}) : flow_(flow), opt_(o), policy_(policy) {}

  /// One optimisation step on batch x (and context cond for conditional flows).
  StepResult step(const Tensor<B>& x, const Tensor<B>& cond = {}) {
    const auto memory = opt_.step_scope();
    zero_grad(flow_);
    const double loss = nll_forward_backward(flow_, ctx_, x, cond, policy_, opt_.gradient_ready(flow_));
    return opt_.step(flow_, loss);
  }
  long steps() const { return opt_.steps(); }
  Counters counters() const { return opt_.counters(); }
  void set_counters(const Counters& c) { opt_.set_counters(c); }
  long skipped_steps() const { return opt_.skipped_steps(); }
  AdamW<B>& optimizer() { return opt_.optimizer(); }
  Ema<B>& ema() { return opt_.ema(); }
  bool has_ema() const { return opt_.has_ema(); }
  const TrainOptions& options() const { return opt_.options(); }
  Optimization<B>& optimization() { return opt_; }

 private:
  F& flow_;
  Optimization<B> opt_;
  P policy_;
  typename F::Context ctx_;  // kept across steps (rewritten by each forward): no per-step allocation of its parts
};

}  // namespace biflow
