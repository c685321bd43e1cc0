#pragma once
// ReverseTrainer: trains the learned reverse model G against a frozen forward flow F (BiFlow stage 2).
// Per step, for a data batch x (and class context):
//   x̃ = x + σε (F's noise augmentation, σ = options.noise); trajectory x⁰ = x̃, x¹, …, x^B = z from F
//   targets: stage j of G -> x^{i_j} (ReverseConfig::target_index), clipped to [−c, c] when options.state_clip
//            (norm control; z, the input, is never clipped); the output -> x⁰ = x̃, or, with a denoise stage
//            (learned denoising), the last trajectory stage -> x̃ and the output -> the clean x
//   loss = output_weight·D_out(G(z), target) [in data space] + Σ_j w_j·D_hidden(strategy terms)
// then gradient clipping, a NaN/Inf guard (skip, stop after K bad steps), AdamW with the cosine schedule, EMA
// of G. F is never modified.
//
// Training-time CFG (G built with ReverseConfig::guidance, options.guidance_max > 0): a fraction of the
// conditional rows get a guidance scale w ~ U(0, guidance_max), the others (and every null-label row) w = 0;
// the output target of a row becomes
//     x_target + w · sg(G(z; c, 0) − G(z; ∅, 0))
// i.e. G(·, w) is trained towards what inference-time CFG on G itself (two passes) would give, so one pass
// at w replaces two; w = 0 rows keep the plain distillation target, so w = 0 is the conditional model.
// Hidden targets stay the unguided trajectory (guidance acts on the output only).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../flow/sequential.hpp"
#include "../train/trainer.hpp"
#include "biflow.hpp"
#include "distance.hpp"
#include "strategy.hpp"

namespace biflow {

struct ReverseTrainOptions {
  TrainOptions optim{};                ///< lr, schedule, weight decay, clipping, EMA of G, NaN guard
  double noise = 0.0;                  ///< σ of F's noise augmentation (the trajectory starts at x + σε)
  double state_clip = 0.0;             ///< norm control: clip intermediate targets to [−c, c]; <= 0: off
  double output_weight = 1.0;          ///< weight of D_out(G(z), x)
  std::vector<double> hidden_weights;  ///< weight of each hidden term (empty: all 1)
  double guidance_max = 0.0;           ///< training-time CFG: w ~ U(0, guidance_max); 0: off
  double guidance_fraction = 0.5;      ///< share of conditional rows trained with w > 0
};

struct ReverseStepResult {
  double loss = 0, output_loss = 0, hidden_loss = 0, grad_norm = 0, lr = 0;
  std::vector<double> hidden_terms;  ///< unweighted D of each hidden term
  bool skipped = false;
};

namespace fn {
struct GuidanceDraw {  // (u1 < fraction ? u2·max : 0)·(1 − is_null)
  double fraction, max;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T u1, T u2, T is_null) const {
    return (u1 < T(fraction) ? u2 * T(max) : T(0)) * (T(1) - is_null);
  }
};
struct ClampAbs {
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x) const { return x > T(c) ? T(c) : x < T(-c) ? T(-c) : x; }
};
}  // namespace fn

/// Where a step's rows sit in a global batch (data parallelism, dist::shard): the step's random draws (input noise,
/// guidance scales) are made for all `global` rows and rows [begin, begin + x.rows()) kept, so N ranks draw exactly
/// what one process at the global batch draws and their Rngs stay in step. global = 0: x is the whole batch.
struct BatchRows {
  long begin = 0, global = 0;
};

/// What G is trained towards for one batch (exposed for inspection and tests).
template <Backend B>
struct ReverseTargets {
  Tensor<B> z;                     ///< G's input, F(x̃)
  std::vector<Tensor<B>> hidden;   ///< targets of hidden states 0 .. S'−2 (state space, N x features)
  Tensor<B> output;                ///< target of G's output (state space), before guidance
  Tensor<B> w;                     ///< guidance scales (N x 1) when training-time CFG is on
};

template <class Flow, class G, class Strategy, class OutDist = Mse, class HidDist = Mse>
class ReverseTrainer {
 public:
  using B = typename G::backend;
  using T = typename B::scalar;
  static_assert(std::is_same_v<B, typename Flow::backend>, "ReverseTrainer: F and G must use the same backend");
  static_assert(check_reverse_strategy<Strategy, B>());
  static_assert(requires(const Flow& f, const Tensor<B>& x) {
    { f.forward_trajectory(x, x) } -> std::same_as<Trajectory<B>>;
  }, "ReverseTrainer: the forward flow needs the inference trajectory `Trajectory<B> forward_trajectory(x, cond) "
     "const` (Sequential, Repeat and TarFlow have it)");
  static_assert(Distance<OutDist, B> && Distance<HidDist, B>,
                "ReverseTrainer: distances need per_row(pred, target), grad(pred, target, w) and name()");

  /// Everything the optimizer updates: G's parameters ("reverse.…") and the strategy's heads ("heads.…").
  struct Trainable {
    G* g;
    Strategy* s;
    template <class V>
    void visit_parameters(V&& v, const std::string& prefix) {
      g->visit_parameters(v, join_name(prefix, "reverse"));
      s->visit_parameters(v, join_name(prefix, "heads"));
    }
    template <class V>
    void visit_buffers(V&& v, const std::string& prefix) {
      visit_buffers_of(*g, v, join_name(prefix, "reverse"));
      visit_buffers_of(*s, v, join_name(prefix, "heads"));
    }
  };

  ReverseTrainer(const Flow& f, G& g, Strategy& s, ReverseTrainOptions o, OutDist out = {}, HidDist hid = {})
      : f_(f), g_(g), s_(s), o_(std::move(o)), out_(std::move(out)), hid_(std::move(hid)),
        opt_(o_.optim, "lower the learning rate or enable ReverseTrainOptions::state_clip") {
    s_.check(g_.config());
    const ReverseConfig& c = g_.config();
    if (c.denoise_stage && !(o_.noise > 0))
      throw usage_error("ReverseTrainer: a denoise stage learns x̃ -> x, which needs the forward model's noise "
                        "level: set ReverseTrainOptions::noise > 0 (the σ F was trained with)");
    if (o_.guidance_max > 0 && (!c.guidance || c.cond_features <= 0))
      throw usage_error("ReverseTrainer: training-time CFG (guidance_max > 0) needs a class-conditional reverse "
                        "model built with ReverseConfig::guidance = true");
    if (o_.guidance_fraction < 0 || o_.guidance_fraction > 1)
      throw usage_error(detail::cat("ReverseTrainer: guidance_fraction must be in [0, 1], got ", o_.guidance_fraction));
    if (!o_.hidden_weights.empty() && long(o_.hidden_weights.size()) != c.total_stages() - 1)
      throw usage_error(detail::cat("ReverseTrainer: ", o_.hidden_weights.size(), " hidden weights for ",
                                    c.total_stages() - 1, " hidden terms"));
  }

  /// Builds the trajectory targets for data x (data space, N x F.features()) and context cond.
  ReverseTargets<B> targets(const Tensor<B>& x, const Tensor<B>& cond, Rng& rng, BatchRows rows = {}) const {
    const ReverseConfig& c = g_.config();
    const long N = x.rows();
    if (rows.global > 0 && (rows.begin < 0 || rows.begin + N > rows.global))
      throw usage_error(detail::cat("ReverseTrainer: rows [", rows.begin, ", ", rows.begin + N,
                                    ") are not inside a global batch of ", rows.global));
    // Random draws for this step's rows: for the whole global batch, then this step's rows of it.
    const auto draw = [&](long cols, auto&& fill) {
      Tensor<B> e(rows.global > 0 ? rows.global : N, cols, uninit);
      fill(e);
      if (rows.global > 0) return slice_rows(e, rows.begin, N);
      return e;
    };
    ReverseTargets<B> t;
    Tensor<B> xt = x;
    if (o_.noise > 0) add_inplace(xt, draw(x.cols(), [&](Tensor<B>& e) { fill_normal(e, rng, T(0), T(o_.noise)); }));
    // F is frozen: the inference pass keeps the states and nothing else (no contexts, no copies of inputs).
    Trajectory<B> tr = f_.forward_trajectory(xt, cond);
    const long nb = long(tr.states.size()) - 1;
    require_cols("ReverseTrainer: F's output", tr.states.back(), c.features());
    t.z = std::move(tr.states.back());
    const long aligned = c.denoise_stage ? c.stages : c.stages - 1;
    for (long j = 0; j < aligned; ++j) {
      const long i = c.target_index(j, nb);
      Tensor<B> s = tr.states[std::size_t(i)];
      if (o_.state_clip > 0 && i > 0) s = zip(fn::ClampAbs{o_.state_clip}, s);
      t.hidden.push_back(std::move(s));
    }
    t.output = c.denoise_stage ? to_states(f_, x) : std::move(tr.states[0]);
    if (c.guidance && o_.guidance_max > 0) {
      const Tensor<B> u1 = draw(1, [&](Tensor<B>& u) { fill_uniform(u, rng); });
      const Tensor<B> u2 = draw(1, [&](Tensor<B>& u) { fill_uniform(u, rng); });
      t.w = zip(fn::GuidanceDraw{o_.guidance_fraction, o_.guidance_max}, u1, u2,
                slice_cols(cond, c.cond_features - 1, 1));
    }
    return t;
  }

  /// One optimisation step of G (and the strategy's heads) on data batch x with context cond. Under data
  /// parallelism x is this rank's shard and `rows` says where it sits in the global batch (BatchRows).
  ReverseStepResult step(const Tensor<B>& x, const Tensor<B>& cond, Rng& rng, BatchRows rows = {}) {
    const auto memory = opt_.step_scope();
    const ReverseConfig& c = g_.config();
    ReverseStepResult r;
    Trainable params{&g_, &s_};
    zero_grad(params);
    ReverseTargets<B> t = targets(x, cond, rng, rows);
    const long N = x.rows();
    Tensor<B> out_target = std::move(t.output);
    if (!t.w.empty()) {
      // Guided target: x + w·(G(z; c, 0) − G(z; ∅, 0)), the difference taken from the current G (no gradient).
      // Rows drawn with w = 0 get x + 0: computing them costs less than a device -> host read of w per step.
      const Tensor<B> zero(2 * N, 1);
      const Tensor<B> both = g_.generate(concat_rows(t.z, t.z), concat_rows(cond, null_rows<B>(N, c.cond_features)), zero);
      out_target = zip(fn::AddMul{}, out_target, zip(fn::Sub{}, slice_rows(both, 0, N), slice_rows(both, N, N)), t.w);
    }
    typename G::Context gc;
    const Tensor<B> out = g_.forward(t.z, cond, c.guidance ? (t.w.empty() ? Tensor<B>(N, 1) : t.w) : Tensor<B>{}, gc);
    std::vector<Tensor<B>> dhidden;
    r.hidden_loss = s_.hidden_loss(c, gc.hidden, t.hidden, hid_, o_.hidden_weights, dhidden, &r.hidden_terms);
    Tensor<B> dout_data;
    r.output_loss = distance_loss(out_, to_data(f_, out), to_data(f_, out_target), o_.output_weight, dout_data);
    r.loss = o_.output_weight * r.output_loss + r.hidden_loss;
    // z is noise: no dz. Data parallel: G's stages' gradients start their all-reduce as the backward passes them.
    backward_with_ready(g_, opt_.gradient_ready(params), gc, to_states(f_, dout_data), dhidden, GradMode::params_only);
    // The shared optimiser step: AdamW over G and the heads, the EMA over G alone (what one samples with).
    // Data parallel: the reported loss and its parts become means over the global batch with the gradients.
    metrics_.assign({r.output_loss, r.hidden_loss});
    metrics_.insert(metrics_.end(), r.hidden_terms.begin(), r.hidden_terms.end());
    const StepResult sr = opt_.step(params, g_, r.loss, metrics_);
    r.loss = sr.loss;
    r.output_loss = metrics_[0];
    r.hidden_loss = metrics_[1];
    std::copy(metrics_.begin() + 2, metrics_.end(), r.hidden_terms.begin());
    r.grad_norm = sr.grad_norm;
    r.lr = sr.lr;
    r.skipped = sr.skipped;
    return r;
  }

  using Counters = typename Optimization<B>::Counters;
  long steps() const { return opt_.steps(); }
  long skipped_steps() const { return opt_.skipped_steps(); }
  Counters counters() const { return opt_.counters(); }
  void set_counters(const Counters& c) { opt_.set_counters(c); }
  AdamW<B>& optimizer() { return opt_.optimizer(); }
  /// EMA of G: generate with the average after `trainer.ema().swap(g)` (swap again to continue training).
  Ema<B>& ema() { return opt_.ema(); }
  bool has_ema() const { return opt_.has_ema(); }
  Optimization<B>& optimization() { return opt_; }
  /// Everything the optimiser updates (G as "reverse.…", the strategy's heads as "heads.…"): what a checkpoint saves.
  Trainable trainable() { return Trainable{&g_, &s_}; }
  const ReverseTrainOptions& options() const { return o_; }
  const OutDist& output_distance() const { return out_; }
  const HidDist& hidden_distance() const { return hid_; }

 private:
  const Flow& f_;
  G& g_;
  Strategy& s_;
  ReverseTrainOptions o_;
  OutDist out_;
  HidDist hid_;
  Optimization<B> opt_;
  std::vector<double> metrics_;  // the step's reported parts of the loss (reduced with it under data parallelism)
};

}  // namespace biflow
