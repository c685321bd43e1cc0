#pragma once
// Learned invertible linear map with LU parameterisation (Glow): y = x Wᵀ, W = P L (U + diag(sign·exp(log_s))).
// P fixed, L unit lower triangular, U strictly upper; log-det = Σ log_s, O(D) instead of O(D³).
#include "../backend/host_linalg.hpp"
#include "flow_layer.hpp"

namespace biflow {

namespace fn {
/// sign * exp(log_s)
struct SignExp {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T sign, T ls) const { return sign * std::exp(ls); }
};
/// a*mask + eye*diag (build a triangular factor from its free entries)
struct Tri {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T mask, T eye, T diag) const { return a * mask + eye * diag; }
};
}  // namespace fn

template <Backend B>
class LULinear : public FlowLayerBase<LULinear<B>, B> {
 public:
  static constexpr const char* layer_name = "LULinear";
  using T = typename B::scalar;
  struct Context {
    Tensor<B> x, l, u;
  };

  LULinear() = default;
  /// Initialised as a random rotation (QR of a Gaussian matrix drawn from rng), then LU-factorised.
  LULinear(long d, Rng& rng) : d_(d) {
    if (d <= 0) throw usage_error(detail::cat("LULinear: features must be positive, got ", d));
    HostMatrix<double> g(d, d);
    for (long i = 0; i < d; ++i)
      for (long j = 0; j < d; ++j) g(i, j) = rng.normal();
    const linalg::RotationLU r = linalg::rotation_lu(g);
    const HostMatrix<double>& lu_m = r.lu;
    const HostMatrix<double>& pt = r.perm;
    HostMatrix<T> lower = HostMatrix<T>::Zero(d, d), upper = HostMatrix<T>::Zero(d, d), ml = lower, mu = lower,
                  eye = HostMatrix<T>::Identity(d, d), p = pt.cast<T>(), ls(1, d), sg(1, d);
    for (long i = 0; i < d; ++i)
      for (long j = 0; j < d; ++j) {
        if (j < i) lower(i, j) = T(lu_m(i, j)), ml(i, j) = T(1);
        if (j > i) upper(i, j) = T(lu_m(i, j)), mu(i, j) = T(1);
      }
    for (long i = 0; i < d; ++i) {
      ls(0, i) = T(std::log(std::abs(lu_m(i, i))));
      sg(0, i) = lu_m(i, i) < 0 ? T(-1) : T(1);
    }
    this->lower = Parameter<B>(from_host<B>(lower));
    this->upper = Parameter<B>(from_host<B>(upper));
    log_scale = Parameter<B>(from_host<B>(ls));
    sign_ = from_host<B>(sg);
    lmask_ = from_host<B>(ml);
    umask_ = from_host<B>(mu);
    eye_ = from_host<B>(eye);
    perm_ = from_host<B>(p);
    one_ = constant<B>(1, 1, T(1));
  }

  long features() const { return d_; }
  long cond_features() const { return 0; }
  /// The current W (D x D).
  Tensor<B> weight() const {
    Tensor<B> l, u;
    return weight(l, u);
  }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, bool want_logdet) const {
    Tensor<B> l, u;
    const Tensor<B> w = ctx ? weight(ctx->l, ctx->u) : weight(l, u);
    if (ctx) ctx->x = x;
    return {matmul(x, false, w, true), want_logdet ? repeated_logdet(log_scale.value, x.rows(), 1.0) : Tensor<B>{}};
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>&, bool want_logdet) const {
    return {matmul(y, false, inverse(weight()), true), want_logdet ? repeated_logdet(log_scale.value, y.rows(), -1.0) : Tensor<B>{}};
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("LULinear.backward: dy", dy, ctx.x.rows(), d_);
    require_shape("LULinear.backward: dlogdet", dlogdet, ctx.x.rows(), 1);
    if (wants_grad(mode, lower) || wants_grad(mode, upper) || wants_grad(mode, log_scale)) {
      const Tensor<B> dw = matmul(dy, true, ctx.x, false);  // ∂/∂W of Σ dy·(x Wᵀ)
      const Tensor<B> da = matmul(perm_, true, dw, false);  // W = P A
      const Tensor<B> dl = matmul(da, false, ctx.u, true);  // A = L U
      const Tensor<B> du = matmul(ctx.l, true, da, false);
      if (wants_grad(mode, lower)) map(lower.grad, fn::AddMul{}, lower.grad, dl, lmask_);
      if (wants_grad(mode, upper)) map(upper.grad, fn::AddMul{}, upper.grad, du, umask_);
      if (wants_grad(mode, log_scale)) {
        Tensor<B> diag, dlsum;
        col_sum(zip(fn::Mul{}, du, eye_), diag);  // 1 x D: du[j][j]
        col_sum(dlogdet, dlsum);                  // 1 x 1: Σ_b dlogdet_b
        map(log_scale.grad, fn::AddMulAdd{}, log_scale.grad, diag, zip(fn::SignExp{}, sign_, log_scale.value),
            dlsum);
      }
    }
    if (!wants_input_grad(mode)) return {};
    Tensor<B> l, u;
    return matmul(dy, false, weight(l, u), false);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "lower"), lower);
    v(join_name(prefix, "upper"), upper);
    v(join_name(prefix, "log_scale"), log_scale);
  }

  /// The fixed permutation matrix P and the signs of U's diagonal are state: "perm" (D x D), "sign" ([D]).
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "perm"), tensor_buffer(perm_, [this](Tensor<B> p) { perm_ = std::move(p); }));
    v(join_name(prefix, "sign"), tensor_buffer(sign_, [this](Tensor<B> s) { sign_ = std::move(s); }));
  }
  Parameter<B> lower, upper, log_scale;

 private:
  Tensor<B> weight(Tensor<B>& l, Tensor<B>& u) const {
    l = Tensor<B>(d_, d_);
    u = Tensor<B>(d_, d_);
    map(l, fn::Tri{}, lower.value, lmask_, eye_, one_);
    map(u, fn::Tri{}, upper.value, umask_, eye_, zip(fn::SignExp{}, sign_, log_scale.value));
    return matmul(perm_, false, matmul(l, false, u, false), false);
  }
  long d_ = 0;
  Tensor<B> sign_, lmask_, umask_, eye_, perm_, one_;
};

}  // namespace biflow
