#pragma once
// Exponential moving average of parameters; evaluate with the average by swapping it in and out.
#include <utility>
#include <vector>

#include "../core/parameter.hpp"

namespace biflow {

template <Backend B>
class Ema {
 public:
  explicit Ema(double decay = 0.999) : decay_(decay) {}
  /// shadow = decay·shadow + (1-decay)·param (shadow starts as a copy at the first call).
  template <HasParameters M>
  void update(M& model) {
    std::size_t i = 0;
    const bool first = shadow_.empty();
    model.visit_parameters([&](const std::string&, Parameter<B>& p) {
      if (first) shadow_.push_back(p.value);
      else map(shadow_.at(i), fn::Axpby{decay_, 1 - decay_}, shadow_.at(i), p.value);
      ++i;
    }, "");
    if (i != shadow_.size())
      throw usage_error(detail::cat("Ema.update: model has ", i, " parameters, the average has ", shadow_.size()));
  }
  /// Exchanges model parameters and averages (call twice to restore).
  template <HasParameters M>
  void swap(M& model) {
    std::size_t i = 0;
    model.visit_parameters([&](const std::string&, Parameter<B>& p) { std::swap(p.value, shadow_.at(i++)); }, "");
  }
  double decay() const { return decay_; }
  bool empty() const { return shadow_.empty(); }
  std::vector<Tensor<B>>& shadow() { return shadow_; }

 private:
  double decay_;
  std::vector<Tensor<B>> shadow_;
};

}  // namespace biflow
