#pragma once
// Maximum-likelihood training loop pieces in one object: AdamW, cosine schedule with warm-up, gradient
// clipping, EMA, and a NaN/Inf guard that skips (and counts) bad steps instead of corrupting the weights.
#include <cmath>
#include <cstdio>
#include <string>

#include "adamw.hpp"
#include "clip.hpp"
#include "ema.hpp"
#include "nll.hpp"
#include "schedule.hpp"

namespace biflow {

struct TrainOptions {
  double lr = 1e-3;
  long warmup = 100;
  long total_steps = 1000;
  double min_lr_fraction = 0.0;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double clip = 1.0;        ///< max global gradient norm; <= 0 disables clipping
  double ema_decay = 0.0;   ///< 0 disables EMA
  bool ema_warmup = true;   ///< EMA decay min(ema_decay, (1+t)/(10+t)) at update t (see Ema)
  long max_bad_steps = 50;  ///< consecutive skipped steps before numeric_error is thrown
  bool verbose = true;      ///< say so on stderr when a step is skipped
};

struct StepResult {
  double loss = 0, grad_norm = 0, lr = 0;
  bool skipped = false;
};

template <FlowLayer F>
class MleTrainer {
 public:
  using B = typename F::backend;
  MleTrainer(F& flow, TrainOptions o)
      : flow_(flow), o_(o), opt_({o.beta1, o.beta2, o.eps, o.weight_decay}), ema_(o.ema_decay, o.ema_warmup),
        sched_{o.lr, o.warmup, o.total_steps, o.min_lr_fraction} {}

  /// One optimisation step on batch x (and context cond for conditional flows).
  StepResult step(const Tensor<B>& x, const Tensor<B>& cond = {}) {
    StepResult r;
    zero_grad(flow_);
    r.loss = nll_forward_backward(flow_, x, cond);
    r.grad_norm = clip_grad_norm(flow_, o_.clip);
    r.lr = sched_(step_);
    if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
      r.skipped = true;
      ++skipped_;
      ++consecutive_bad_;
      if (o_.verbose)
        std::fprintf(stderr, "biflow: step %ld skipped: %s is %s (%ld skipped so far)\n", step_,
                     std::isfinite(r.loss) ? "gradient norm" : "loss",
                     std::isfinite(r.loss) ? std::to_string(r.grad_norm).c_str() : std::to_string(r.loss).c_str(),
                     skipped_);
      zero_grad(flow_);
      if (consecutive_bad_ >= o_.max_bad_steps)
        throw numeric_error(detail::cat("training stopped: ", consecutive_bad_,
                                        " consecutive steps had a non-finite loss or gradient (last loss ", r.loss,
                                        "); lower the learning rate or check the data"));
      ++step_;
      return r;
    }
    consecutive_bad_ = 0;
    opt_.step(flow_, r.lr);
    if (o_.ema_decay > 0) ema_.update(flow_);
    ++step_;
    return r;
  }
  long steps() const { return step_; }
  /// Step counters (checkpoints): steps taken, skipped in all, skipped in a row.
  struct Counters {
    long step = 0, skipped = 0, consecutive_bad = 0;
  };
  Counters counters() const { return {step_, skipped_, consecutive_bad_}; }
  void set_counters(const Counters& c) {
    step_ = c.step;
    skipped_ = c.skipped;
    consecutive_bad_ = c.consecutive_bad;
  }
  long skipped_steps() const { return skipped_; }
  AdamW<B>& optimizer() { return opt_; }
  Ema<B>& ema() { return ema_; }
  bool has_ema() const { return o_.ema_decay > 0 && !ema_.empty(); }
  const TrainOptions& options() const { return o_; }

 private:
  F& flow_;
  TrainOptions o_;
  AdamW<B> opt_;
  Ema<B> ema_;
  CosineSchedule sched_;
  long step_ = 0, skipped_ = 0, consecutive_bad_ = 0;
};

}  // namespace biflow
