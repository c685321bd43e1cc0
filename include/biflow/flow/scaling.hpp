#pragma once
// DiagonalScaling (NICE's last layer, Dinh et al. 2014): y = x ⊙ exp(s) with a learned s per feature; log-det Σ s.
// The volume change an additive-coupling flow otherwise lacks; unlike ActNorm, no shift and no data-dependent
// initialisation (s starts at 0: the identity).
#include "actnorm.hpp"
#include "flow_layer.hpp"

namespace biflow {

template <Backend B>
class DiagonalScaling : public FlowLayerBase<DiagonalScaling<B>, B> {
 public:
  static constexpr const char* layer_name = "DiagonalScaling";
  using T = typename B::scalar;
  struct Context {
    Tensor<B> y;
  };
  DiagonalScaling() = default;
  explicit DiagonalScaling(long d) : d_(d) {
    if (d <= 0) throw usage_error(detail::cat("DiagonalScaling: features must be positive, got ", d));
    log_scale = Parameter<B>(Tensor<B>(1, d));
  }
  long features() const { return d_; }
  long cond_features() const { return 0; }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, bool want_logdet) const {
    FlowOut<B> out{zip(fn::MulExp{}, x, log_scale.value),
                   want_logdet ? repeated_logdet(log_scale.value, x.rows(), 1.0) : Tensor<B>{}};
    if (ctx) ctx->y = out.y;
    return out;
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>&, bool want_logdet) const {
    return {zip(fn::MulExpNeg{}, y, log_scale.value),
            want_logdet ? repeated_logdet(log_scale.value, y.rows(), -1.0) : Tensor<B>{}};
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("DiagonalScaling.backward: dy", dy, ctx.y.rows(), d_);
    require_shape("DiagonalScaling.backward: dlogdet", dlogdet, ctx.y.rows(), 1);
    if (wants_grad(mode, log_scale)) {
      // d/ds_j: Σ_rows dy·y (y = x·exp(s)) plus Σ_rows dlogdet (every row's log-det holds each s_j once)
      Tensor<B> dls, dlsum;
      col_sum(zip(fn::Mul{}, dy, ctx.y), dls);
      col_sum(dlogdet, dlsum);
      map(log_scale.grad, fn::Add3{}, log_scale.grad, dls, dlsum);
    }
    if (!wants_input_grad(mode)) return {};
    return zip(fn::MulExp{}, dy, log_scale.value);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "log_scale"), log_scale);
  }
  Parameter<B> log_scale;

 private:
  long d_ = 0;
};

}  // namespace biflow
