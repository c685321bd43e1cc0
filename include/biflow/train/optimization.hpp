#pragma once
// The optimiser step every trainer shares (MleTrainer, ReverseTrainer, MlpClassifier::train_step): after the
// caller's backward, clip the global gradient norm, guard against a non-finite loss or gradient (skip the step,
// count it, stop after K in a row), take the cosine-with-warm-up learning rate, step AdamW, update the EMA, and
// count. Its whole state (AdamW moments, EMA average, counters) is what a checkpoint saves (checkpoint.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../backend/step_memory.hpp"
#include "../nn/gradient_ready.hpp"
#include "adamw.hpp"
#include "clip.hpp"
#include "ema.hpp"
#include "schedule.hpp"

namespace biflow {

struct TrainOptions {
  double lr = 1e-3;
  long warmup = 100;
  long total_steps = 1000;
  double min_lr_fraction = 0.0;
  bool linear_decay = false;  ///< decay in a straight line instead of a cosine after the warm-up
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

template <Backend B>
class Optimization {
 public:
  /// Step counters (checkpoints): steps taken, skipped in all, skipped in a row.
  struct Counters {
    long step = 0, skipped = 0, consecutive_bad = 0;
  };

  explicit Optimization(TrainOptions o, std::string hint = "lower the learning rate or check the data")
      : o_(o), hint_(std::move(hint)), opt_({o.beta1, o.beta2, o.eps, o.weight_decay}),
        ema_(o.ema_decay, o.ema_warmup), sched_{o.lr, o.warmup, o.total_steps, o.min_lr_fraction, o.linear_decay} {}

  /// Opened by the trainers around each step (forward, backward and this step): the step's tensors then reuse
  /// the buffers of the step before (Cpu: cpu::Arena), so after warm-up a step allocates no tensor memory.
  auto step_scope() { return memory_.scope(); }
  StepMemory<B>& step_memory() { return memory_; }

  /// Finishes a step whose gradients `trainable` now holds (the caller zeroed them before its backward):
  /// clipping, guard, AdamW on `trainable`, EMA of `averaged` (the model whose weights one evaluates: the whole
  /// trainable, or a part of it such as G without its training-only heads). `metrics`: the loss's parts the
  /// caller reports (each a mean over the batch); under data parallelism they become global means with the loss.
  template <HasParameters M, HasParameters E>
  StepResult step(M& trainable, E& averaged, double loss, std::span<double> metrics = {}) {
    StepResult r;
    r.loss = loss;
    // Parameters and gradients in one flat buffer each (built at the first step, rebuilt if the model's
    // parameters stop being its views): clipping, AdamW and EMA are then a few passes over the whole model.
    if constexpr (ViewableTensors<B>) {
      if (!flat_ || !flat_->bound_to(trainable)) {
        ready_.reset();  // it points into the old buffer
        flat_ = std::make_unique<FlatParameters<B>>(trainable);
      }
      // Data parallelism: the global mean gradient and loss, before clipping and the guard see them, so every
      // rank clips, skips and steps alike.
      if (reducer_) {
        scalars_.assign(1, loss);
        scalars_.insert(scalars_.end(), metrics.begin(), metrics.end());
        reducer_(flat_->grads(), scalars_);
        r.loss = scalars_[0];
        std::copy(scalars_.begin() + 1, scalars_.end(), metrics.begin());
      }
      r.grad_norm = clip_grad_norm(*flat_, o_.clip);
    } else {
      if (reducer_)
        throw usage_error("Optimization: data-parallel training reduces the flat gradient buffer, which needs a "
                          "backend whose tensors can be views (Cpu, Cuda)");
      r.grad_norm = clip_grad_norm(trainable, o_.clip);
    }
    r.lr = sched_(c_.step);
    if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
      r.skipped = true;
      ++c_.skipped;
      ++c_.consecutive_bad;
      if (o_.verbose)
        std::fprintf(stderr, "biflow: step %ld skipped: %s is %s (%ld skipped so far)\n", c_.step,
                     std::isfinite(r.loss) ? "gradient norm" : "loss",
                     std::isfinite(r.loss) ? std::to_string(r.grad_norm).c_str() : std::to_string(r.loss).c_str(),
                     c_.skipped);
      zero_grad(trainable);
      if (c_.consecutive_bad >= o_.max_bad_steps)
        throw numeric_error(detail::cat("training stopped: ", c_.consecutive_bad,
                                        " consecutive steps had a non-finite loss or gradient (last loss ", r.loss,
                                        "); ", hint_));
      ++c_.step;
      return r;
    }
    c_.consecutive_bad = 0;
    if constexpr (ViewableTensors<B>) {
      opt_.step(*flat_, trainable, r.lr);
      // The average covers the whole flat buffer when the averaged model is the trainable one.
      if (o_.ema_decay > 0) {
        if (static_cast<const void*>(&averaged) == static_cast<const void*>(&trainable)) ema_.update(*flat_);
        else ema_.update(averaged);
      }
    } else {
      opt_.step(trainable, r.lr);
      if (o_.ema_decay > 0) ema_.update(averaged);
    }
    ++c_.step;
    return r;
  }
  template <HasParameters M>
  StepResult step(M& trainable, double loss) {
    return step(trainable, trainable, loss);
  }

  long steps() const { return c_.step; }
  long skipped_steps() const { return c_.skipped; }
  Counters counters() const { return c_; }
  void set_counters(const Counters& c) { c_ = c; }
  AdamW<B>& optimizer() { return opt_; }
  Ema<B>& ema() { return ema_; }
  /// An EMA average exists: evaluate with it by `ema().swap(model)` (and swap back to continue training).
  bool has_ema() const { return o_.ema_decay > 0 && !ema_.empty(); }
  const TrainOptions& options() const { return o_; }
  /// The flat parameter and gradient buffers of the trainable model (null before the first step, or on a backend
  /// whose tensors cannot be views).
  FlatParameters<B>* flat() { return flat_.get(); }
  /// Data parallelism (dist/data_parallel.hpp installs it): called at every step after the caller's backward and
  /// before clipping, with the flat gradient buffer and the local scalars (the loss, then the step's metrics); it
  /// leaves the global mean gradient in the buffer and the global means in the scalars. Empty (the default): one
  /// process.
  using GradientReducer = std::function<void(Tensor<B>& flat_grads, std::span<double> scalars)>;
  void set_gradient_reducer(GradientReducer r) { reducer_ = std::move(r); }
  /// Overlap (dist/data_parallel.hpp installs it with the reducer): hears, during the caller's backward, which
  /// ranges [begin, end) of the flat gradient buffer are final, so their all-reduce can start before the backward
  /// ends. The reducer then finishes what is left.
  using ReadyHook = std::function<void(Tensor<B>& flat_grads, long begin, long end)>;
  void set_gradient_ready_hook(ReadyHook h) {
    ready_hook_ = std::move(h);
    ready_.reset();
  }
  /// What a trainer hands its model's backward (nn/gradient_ready.hpp): null without an overlap hook, or before the
  /// first step has built the flat buffer of `trainable`.
  template <HasParameters M>
  const GradientReady<B>* gradient_ready(M& trainable) {
    if constexpr (ViewableTensors<B>) {
      if (!ready_hook_ || !flat_ || !flat_->bound_to(trainable)) return nullptr;
      if (!ready_)
        ready_ = std::make_unique<GradientReady<B>>(flat_->grads().data(), flat_->size(), [this](long b, long e) {
          ready_hook_(flat_->grads(), b, e);
        });
      return ready_.get();
    } else {
      return nullptr;
    }
  }
  bool reduces_gradients() const { return bool(reducer_); }

 private:
  StepMemory<B> memory_;
  TrainOptions o_;
  std::string hint_;
  AdamW<B> opt_;
  Ema<B> ema_;
  CosineSchedule sched_;
  Counters c_;
  std::unique_ptr<FlatParameters<B>> flat_;
  GradientReducer reducer_;
  ReadyHook ready_hook_;
  std::unique_ptr<GradientReady<B>> ready_;
  std::vector<double> scalars_;
};

}  // namespace biflow
