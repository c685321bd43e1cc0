#pragma once
// AdamW (Loshchilov & Hutter): decoupled weight decay, bias-corrected moments; as torch.optim.AdamW.
#include <cmath>
#include <limits>
#include <vector>

#include "../nn/parameter.hpp"

namespace biflow {

namespace fn {
struct AdamWUpdate {
  double lr, b1, b2, eps, wd, bc1, bc2;
  template <class T>
  BIFLOW_HOST_DEVICE void operator()(T& p, T& g, T& m, T& v) const {
    p -= T(lr * wd) * p;
    m = T(b1) * m + T(1 - b1) * g;
    v = T(b2) * v + T(1 - b2) * g * g;
    // A parameter whose gradient stays 0 (e.g. behind a dead ReLU) has m decaying by β₁ per step into the
    // denormal range, where x86 float arithmetic is ~100x slower (measured: 11% of a toy training step).
    // Below the smallest normal number the moment moves p by < lr·1e-38/eps, so it is flushed to zero.
    if (std::abs(m) < std::numeric_limits<T>::min()) m = T(0);
    if (v < std::numeric_limits<T>::min()) v = T(0);
    // lr·m̂ / (√v̂ + eps) with m̂ = m/bc1, v̂ = v/bc2: one division instead of three
    p -= T(lr / bc1) * m / (std::sqrt(v * T(1 / bc2)) + T(eps));
  }
};
}  // namespace fn

template <Backend B>
class AdamW {
 public:
  using backend_type = B;
  struct Options {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  };
  AdamW() = default;
  explicit AdamW(Options o) : o_(o) {}

  /// One update of every non-frozen parameter of model with learning rate lr, from the gradients it holds.
  template <HasParameters M>
  void step(M& model, double lr) {
    ++t_;
    const double bc1 = 1 - std::pow(o_.beta1, double(t_)), bc2 = 1 - std::pow(o_.beta2, double(t_));
    const fn::AdamWUpdate up{lr, o_.beta1, o_.beta2, o_.eps, o_.weight_decay, bc1, bc2};
    std::size_t i = 0;
    model.visit_parameters([&](const std::string& name, Parameter<B>& p) {
      if (i == m_.size()) {
        m_.emplace_back(p.value.rows(), p.value.cols());
        v_.emplace_back(p.value.rows(), p.value.cols());
        names_.push_back(name);
      } else if (names_[i] != name) {
        throw usage_error(detail::cat("AdamW.step: parameter ", i, " is '", name, "', was '", names_[i],
                                      "' at the first step; one optimiser serves one model"));
      }
      // A frozen parameter (requires_grad = False) is left alone: no weight decay, no moment decay.
      if (!p.frozen) for_each(up, p.value, p.grad, m_[i], v_[i]);
      ++i;
    }, "");
  }
  long steps() const { return t_; }
  const Options& options() const { return o_; }
  /// Optimiser state, in parameter visiting order (for checkpoints).
  std::vector<Tensor<B>>& first_moments() { return m_; }
  std::vector<Tensor<B>>& second_moments() { return v_; }
  const std::vector<std::string>& names() const { return names_; }
  /// Restores the state saved from first_moments(), second_moments(), names() and steps() (checkpoints).
  void set_state(long steps, std::vector<Tensor<B>> m, std::vector<Tensor<B>> v, std::vector<std::string> names) {
    if (m.size() != v.size() || m.size() != names.size())
      throw usage_error(detail::cat("AdamW.set_state: ", m.size(), " first moments, ", v.size(), " second moments, ",
                                    names.size(), " names"));
    t_ = steps;
    m_ = std::move(m);
    v_ = std::move(v);
    names_ = std::move(names);
  }

 private:
  Options o_;
  long t_ = 0;
  std::vector<Tensor<B>> m_, v_;
  std::vector<std::string> names_;
};

}  // namespace biflow
