#pragma once
// ActNorm (Glow): y = (x + loc) ⊙ exp(log_scale), per feature; log-det = Σ log_scale.
// data_init(x) sets loc and log_scale so the first batch comes out with zero mean and unit variance.
#include "flow_layer.hpp"

namespace biflow {

namespace fn {
struct Add3 {  // a + b + c
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T c) const { return a + b + c; }
};
struct AddMulExp {  // (x + loc) * exp(ls)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T loc, T ls) const { return (x + loc) * std::exp(ls); }
};
struct ActInv {  // y * exp(-ls) - loc
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T y, T loc, T ls) const { return y * std::exp(-ls) - loc; }
};
struct NegLogSqrtEps {  // -log(sqrt(v) + eps)
  double eps;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T v) const { return -std::log(std::sqrt(v) + T(eps)); }
};
}  // namespace fn

template <Backend B>
class ActNorm : public FlowLayerBase<ActNorm<B>, B> {
 public:
  static constexpr const char* layer_name = "ActNorm";
  using T = typename B::scalar;
  struct Context {
    Tensor<B> y;
  };
  ActNorm() = default;
  explicit ActNorm(long d) : d_(d) {
    loc = Parameter<B>(Tensor<B>(1, d));
    log_scale = Parameter<B>(Tensor<B>(1, d));
  }
  long features() const { return d_; }
  long cond_features() const { return 0; }
  bool initialized() const { return initialized_; }

  /// Data-dependent initialisation from a batch (needs at least 2 rows).
  void data_init(const Tensor<B>& x, const Tensor<B>& = {}) {
    require_cols("ActNorm.data_init", x, d_);
    if (x.rows() < 2) throw shape_error(detail::cat("ActNorm.data_init: need at least 2 rows, got ", x.rows()));
    Tensor<B> mean, var;
    col_sum(x, mean);
    map(mean, fn::Scale{1.0 / double(x.rows())}, mean);
    col_sum(zip(fn::SqDiffScaled{1.0 / double(x.rows())}, x, mean), var);
    map(loc.value, fn::Neg{}, mean);
    map(log_scale.value, fn::NegLogSqrtEps{1e-6}, var);
    initialized_ = true;
  }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, bool want_logdet) const {
    FlowOut<B> out{zip(fn::AddMulExp{}, x, loc.value, log_scale.value),
                   want_logdet ? repeated_logdet(log_scale.value, x.rows(), 1.0) : Tensor<B>{}};
    if (ctx) ctx->y = out.y;
    return out;
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>&, bool want_logdet) const {
    return {zip(fn::ActInv{}, y, loc.value, log_scale.value), want_logdet ? repeated_logdet(log_scale.value, y.rows(), -1.0) : Tensor<B>{}};
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("ActNorm.backward: dy", dy, ctx.y.rows(), d_);
    require_shape("ActNorm.backward: dlogdet", dlogdet, ctx.y.rows(), 1);
    Tensor<B> dx = zip(fn::MulExp{}, dy, log_scale.value);
    if (wants_grad(mode, loc)) col_sum(dx, loc.grad, T(1));
    if (wants_grad(mode, log_scale)) {
      Tensor<B> dls, dlsum;
      col_sum(zip(fn::Mul{}, dy, ctx.y), dls);
      col_sum(dlogdet, dlsum);
      map(log_scale.grad, fn::Add3{}, log_scale.grad, dls, dlsum);
    }
    return dx;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "loc"), loc);
    v(join_name(prefix, "log_scale"), log_scale);
  }
  /// Whether data_init ran is state (a loaded ActNorm must not be re-initialised): "initialized", a flag.
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "initialized"), flag_buffer(initialized_, [this](bool b) { initialized_ = b; }));
  }
  Parameter<B> loc, log_scale;

 private:
  long d_ = 0;
  bool initialized_ = false;
};

}  // namespace biflow
