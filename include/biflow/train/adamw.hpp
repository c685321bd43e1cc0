#pragma once
// AdamW (Loshchilov & Hutter): decoupled weight decay, bias-corrected moments; as torch.optim.AdamW.
#include <cmath>
#include <limits>
#include <vector>

#include "flat_parameters.hpp"

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
  /// The same update over a model whose parameters live in `flat` (FlatParameters): one for_each over each run
  /// of consecutive non-frozen parameters (usually one run: the whole buffer) instead of one per tensor. The
  /// moments live in flat buffers too; first_moments() / second_moments() are views of them, per parameter.
  template <HasParameters M>
    requires ViewableTensors<B>
  void step(FlatParameters<B>& flat, M& model, double lr) {
    std::vector<char> frozen;
    model.visit_parameters([&](const std::string&, Parameter<B>& p) { frozen.push_back(p.frozen ? 1 : 0); }, "");
    if (frozen.size() != flat.entries().size() || !flat.bound_to(model))
      throw usage_error("AdamW.step: the model's parameters are not the views of this FlatParameters");
    bind_moments(flat);
    ++t_;
    const double bc1 = 1 - std::pow(o_.beta1, double(t_)), bc2 = 1 - std::pow(o_.beta2, double(t_));
    const fn::AdamWUpdate up{lr, o_.beta1, o_.beta2, o_.eps, o_.weight_decay, bc1, bc2};
    for (const auto& [off, len] : flat.runs([&](std::size_t i) { return !frozen[i]; })) {
      Tensor<B> p, g, m, v;
      bind_view(p, flat.values_storage(), off, 1, len);
      bind_view(g, flat.grads_storage(), off, 1, len);
      bind_view(m, m_flat_, off, 1, len);
      bind_view(v, v_flat_, off, 1, len);
      for_each(up, p, g, m, v);
    }
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
    m_flat_.reset();  // the flat path adopts these at its next step
    v_flat_.reset();
  }

 private:
  /// Moments as views of two flat buffers laid out like `flat`; existing per-tensor moments (a restored
  /// checkpoint, earlier per-tensor steps) are copied in first.
  void bind_moments(const FlatParameters<B>& flat) {
    const auto& es = flat.entries();
    if (m_flat_ && m_flat_->size() == flat.size() && m_.size() == es.size()) return;
    if (!m_.empty()) {
      if (m_.size() != es.size())
        throw usage_error(detail::cat("AdamW.step: the optimiser holds moments for ", m_.size(),
                                      " parameters, the model has ", es.size(), "; one optimiser serves one model"));
      for (std::size_t i = 0; i < es.size(); ++i)
        if (names_[i] != es[i].name)
          throw usage_error(detail::cat("AdamW.step: parameter ", i, " is '", es[i].name, "', was '", names_[i],
                                        "' at the first step; one optimiser serves one model"));
    }
    auto m = std::make_shared<Tensor<B>>(1, flat.size());
    auto v = std::make_shared<Tensor<B>>(1, flat.size());
    const bool adopt = !m_.empty();
    if (!adopt) {
      m_.resize(es.size());
      v_.resize(es.size());
      for (const auto& e : es) names_.push_back(e.name);
    }
    for (std::size_t i = 0; i < es.size(); ++i) {
      const auto& e = es[i];
      if (adopt && e.size() > 0) {
        require_shape("AdamW.step: a restored first moment", m_[i], e.rows, e.cols);
        require_shape("AdamW.step: a restored second moment", v_[i], e.rows, e.cols);
        copy_block(m_[i], 0, e.size(), *m, e.offset, flat.size(), 1, e.size());
        copy_block(v_[i], 0, e.size(), *v, e.offset, flat.size(), 1, e.size());
      }
      bind_view(m_[i], m, e.offset, e.rows, e.cols);
      bind_view(v_[i], v, e.offset, e.rows, e.cols);
    }
    m_flat_ = std::move(m);
    v_flat_ = std::move(v);
  }
  std::shared_ptr<Tensor<B>> m_flat_, v_flat_;

  Options o_;
  long t_ = 0;
  std::vector<Tensor<B>> m_, v_;
  std::vector<std::string> names_;
};

}  // namespace biflow
