#pragma once
// Planar flow (Rezende & Mohamed 2015): y = x + û·tanh(w·x + b), log|det| = log(1 + (1 − tanh²(w·x + b))·w·û).
// Invertible because û is reparameterised so that w·û = m(w·u) > −1 (their appendix A):
//   û = u + (m(w·u) − w·u)·w/‖w‖²,  m(a) = −1 + ε + softplus(a), ε = 10⁻⁴.
// The paper has ε = 0; then for w·u ≪ 0 softplus underflows, w·û rounds to −1 and the Jacobian turns singular
// (log-det −∞) — ε keeps det ≥ ε, i.e. the log-det ≥ log ε ≈ −9.2, in float and double.
// No closed-form inverse (a 1-D root per sample would do, but the literature and this library treat planar flows as
// forward-only): `has_inverse = false`. Read forward as noise → data when the flow is a variational sampler
// (ElboTrainer), or as data → noise for a density; a learned inverse (reverse/) is the way back.
// Every quantity is computed with backend primitives (1×1 tensors for the scalars), so a training step reads nothing
// back from a device.
#include <cmath>

#include "flow_layer.hpp"

namespace biflow {

namespace fn {
template <class T>
BIFLOW_HOST_DEVICE inline T softplus(T a) {
  return a > T(0) ? a + std::log1p(std::exp(-a)) : std::log1p(std::exp(a));
}
template <class T>
BIFLOW_HOST_DEVICE inline T sigmoid(T a) {
  return a >= T(0) ? T(1) / (T(1) + std::exp(-a)) : std::exp(a) / (T(1) + std::exp(a));
}
struct Softplus {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return softplus(a); }
};
/// tanh(a + b)
struct TanhAdd {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b) const { return std::tanh(a + b); }
};
/// The planar coefficient c = (m(w·u) − w·u)/‖w‖², m(a) = −1 + 10⁻⁴ + softplus(a) (0 for w = 0, where û = u and
/// w·û = 0 hold exactly).
struct PlanarCoef {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T wu, T ww) const {
    return ww > T(0) ? (T(-1) + T(1e-4) + softplus(wu) - wu) / ww : T(0);
  }
};
/// ∂c/∂(w·u) = (σ(w·u) − 1)/‖w‖².
struct PlanarDcDwu {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T wu, T ww) const { return ww > T(0) ? (sigmoid(wu) - T(1)) / ww : T(0); }
};
/// log(1 + (1 − t²)·d): the log-det term of a tanh unit with slope product d (planar: d = w·û; Sylvester: R̃ₘₘRₘₘ).
struct TanhUnitLogdet {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T t, T d) const { return std::log1p((T(1) - t * t) * d); }
};
/// ∂loss/∂(pre-activation) of such a unit: g·s + dl·d·(−2ts)/(1 + s·d), s = 1 − t², g = ∂loss/∂t.
struct TanhUnitGrad {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T g, T t, T d, T dl) const {
    const T s = T(1) - t * t;
    return g * s + dl * d * (T(-2) * t * s) / (T(1) + s * d);
  }
};
/// ∂loss/∂d through the log-det term: dl·s/(1 + s·d).
struct TanhUnitDd {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T t, T d, T dl) const {
    const T s = T(1) - t * t;
    return dl * s / (T(1) + s * d);
  }
};
/// ∂loss/∂w of the planar layer: c·G + k·u + 2·sg·(∂c/∂‖w‖²)·w + gm·û + dw (∂c/∂‖w‖² = −c/‖w‖²).
struct PlanarDw {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T G, T u, T w, T uh, T dw, T c, T k, T sg, T ww, T gm) const {
    const T dcdww = ww > T(0) ? -c / ww : T(0);
    return c * G + k * u + T(2) * sg * dcdww * w + gm * uh + dw;
  }
};
}  // namespace fn

template <Backend B>
class Planar : public FlowLayerBase<Planar<B>, B> {
 public:
  static constexpr const char* layer_name = "Planar";
  static constexpr bool has_inverse = false;
  using T = typename B::scalar;
  struct Context {
    Tensor<B> x, t;  // input and tanh(w·x + b)
  };
  Planar() = default;
  /// u, w ~ N(0, init_scale²/D) (w must not start at 0: the reparameterisation divides by ‖w‖²), b = 0.
  Planar(long d, Rng& rng, double init_scale = 1.0) : d_(d) {
    if (d <= 0) throw usage_error(detail::cat("Planar: features must be positive, got ", d));
    u = Parameter<B>(Tensor<B>(1, d));
    w = Parameter<B>(Tensor<B>(1, d));
    b = Parameter<B>(Tensor<B>(1, 1));
    const T sd = T(init_scale / std::sqrt(double(d)));
    fill_normal(u.value, rng, T(0), sd);
    fill_normal(w.value, rng, T(0), sd);
  }
  long features() const { return d_; }
  long cond_features() const { return 0; }

  /// û (1 × D) and w·û (1 × 1, > −1).
  std::pair<Tensor<B>, Tensor<B>> u_hat() const {
    const Tensor<B> wu = matmul(w.value, false, u.value, true), ww = matmul(w.value, false, w.value, true);
    Tensor<B> uh = zip(fn::AddMul{}, u.value, zip(fn::PlanarCoef{}, wu, ww), w.value);
    Tensor<B> wuh = matmul(w.value, false, uh, true);
    return {std::move(uh), std::move(wuh)};
  }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, bool want_logdet) const {
    const auto [uh, wuh] = u_hat();
    Tensor<B> t = zip(fn::TanhAdd{}, matmul(x, false, w.value, true), b.value);
    FlowOut<B> out{zip(fn::AddMul{}, x, t, uh), want_logdet ? zip(fn::TanhUnitLogdet{}, t, wuh) : Tensor<B>{}};
    if (ctx) {
      ctx->x = x;
      ctx->t = std::move(t);
    }
    return out;
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("Planar.backward: dy", dy, ctx.x.rows(), d_);
    require_shape("Planar.backward: dlogdet", dlogdet, ctx.x.rows(), 1);
    const auto [uh, wuh] = u_hat();
    // ∂loss/∂a per row (a = w·x + b), through y = x + û·tanh(a) and the log-det.
    const Tensor<B> ga = zip(fn::TanhUnitGrad{}, matmul(dy, false, uh, true), ctx.t, wuh, dlogdet);
    if (wants_grad(mode, u) || wants_grad(mode, w) || wants_grad(mode, b)) {
      Tensor<B> gm;  // ∂loss/∂(w·û), 1 × 1
      col_sum(zip(fn::TanhUnitDd{}, ctx.t, wuh, dlogdet), gm);
      // ∂loss/∂û: Σ t·dy, plus gm·w because w·û appears in the log-det.
      const Tensor<B> G = zip(fn::AddMul{}, matmul(ctx.t, true, dy, false), gm, w.value);
      const Tensor<B> wu = matmul(w.value, false, u.value, true), ww = matmul(w.value, false, w.value, true);
      const Tensor<B> c = zip(fn::PlanarCoef{}, wu, ww);
      const Tensor<B> sg = matmul(G, false, w.value, true);          // G·w
      const Tensor<B> k = zip(fn::Mul{}, sg, zip(fn::PlanarDcDwu{}, wu, ww));
      if (wants_grad(mode, w)) {
        const Tensor<B> dw_direct = matmul(ga, true, ctx.x, false);  // through a = w·x + b
        map(w.grad, fn::Add{}, w.grad,
            zip(fn::PlanarDw{}, G, u.value, w.value, uh, dw_direct, c, k, sg, ww, gm));
      }
      if (wants_grad(mode, u)) map(u.grad, fn::Add{}, u.grad, zip(fn::AddMul{}, G, k, w.value));
      if (wants_grad(mode, b)) col_sum(ga, b.grad, T(1));  // accumulates
    }
    if (!wants_input_grad(mode)) return {};
    return zip(fn::AddMul{}, dy, ga, w.value);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "u"), u);
    v(join_name(prefix, "w"), w);
    v(join_name(prefix, "b"), b);
  }
  Parameter<B> u, w, b;

 private:
  long d_ = 0;
};

}  // namespace biflow
