#pragma once
// Exponential moving average of parameters; evaluate with the average by swapping it in and out.
#include <algorithm>
#include <utility>
#include <vector>

#include "flat_parameters.hpp"

namespace biflow {

template <Backend B>
class Ema {
 public:
  /// warmup: use decay_t = min(decay, (1 + t) / (10 + t)) at the t-th update, so a short run's average is not
  /// dominated by the initial weights (0.999^1500 ≈ 0.22 of them would remain after 1500 steps otherwise).
  explicit Ema(double decay = 0.999, bool warmup = false) : decay_(decay), warmup_(warmup) {}
  /// shadow = d·shadow + (1-d)·param with d = decay (or the warm-up value); the shadow starts as a copy at the
  /// first call.
  template <HasParameters M>
  void update(M& model) {
    std::size_t i = 0;
    const bool first = shadow_.empty();
    const double t = double(updates_), d = warmup_ ? std::min(decay_, (1 + t) / (10 + t)) : decay_;
    model.visit_parameters([&](const std::string&, Parameter<B>& p) {
      if (first) shadow_.push_back(p.value);
      else map(shadow_.at(i), fn::Axpby{d, 1 - d}, shadow_.at(i), p.value);
      ++i;
    }, "");
    ++updates_;
    if (i != shadow_.size())
      throw usage_error(detail::cat("Ema.update: model has ", i, " parameters, the average has ", shadow_.size()));
  }
  /// The same update over the whole flat parameter buffer in one pass (the average is a flat buffer too;
  /// shadow() holds per-parameter views of it).
  void update(FlatParameters<B>& flat) {
    const auto& es = flat.entries();
    const double t = double(updates_), d = warmup_ ? std::min(decay_, (1 + t) / (10 + t)) : decay_;
    if (!flat_ || flat_->size() != flat.size() || shadow_.size() != es.size()) {
      // First update (the average starts as a copy), or adopting a restored per-tensor average.
      const bool adopt = !shadow_.empty();
      if (adopt && shadow_.size() != es.size())
        throw usage_error(detail::cat("Ema.update: model has ", es.size(), " parameters, the average has ",
                                      shadow_.size()));
      auto s = std::make_shared<Tensor<B>>(flat.values());
      if (!adopt) shadow_.resize(es.size());
      for (std::size_t i = 0; i < es.size(); ++i) {
        const auto& e = es[i];
        if (adopt && e.size() > 0) {
          require_shape("Ema.update: a restored average", shadow_[i], e.rows, e.cols);
          copy_block(shadow_[i], 0, e.size(), *s, e.offset, flat.size(), 1, e.size());
        }
        bind_view(shadow_[i], s, e.offset, e.rows, e.cols);
      }
      flat_ = std::move(s);
      if (!adopt) {
        ++updates_;
        return;
      }
    }
    map(*flat_, fn::Axpby{d, 1 - d}, *flat_, flat.values());
    ++updates_;
  }
  /// Exchanges model parameters and averages (call twice to restore).
  template <HasParameters M>
  void swap(M& model) {
    std::size_t i = 0;
    model.visit_parameters([&](const std::string&, Parameter<B>& p) { std::swap(p.value, shadow_.at(i++)); }, "");
  }
  double decay() const { return decay_; }
  long updates() const { return updates_; }
  bool empty() const { return shadow_.empty(); }
  std::vector<Tensor<B>>& shadow() { return shadow_; }
  /// Restores a saved average (checkpoints).
  void set_state(long updates, std::vector<Tensor<B>> shadow) {
    updates_ = updates;
    shadow_ = std::move(shadow);
    flat_.reset();  // the flat path adopts it at its next update
  }

 private:
  double decay_;
  bool warmup_ = false;
  long updates_ = 0;
  std::vector<Tensor<B>> shadow_;
  std::shared_ptr<Tensor<B>> flat_;  // the flat average shadow_ views (flat path only)
};

}  // namespace biflow
