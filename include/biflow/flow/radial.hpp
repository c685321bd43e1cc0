#pragma once
// Radial flow (Rezende & Mohamed 2015): y = x + β·h(r)·(x − x₀), r = ‖x − x₀‖, h = 1/(α + r), with α = softplus(α̂) > 0
// and β = −α + softplus(β̂) > −α (the invertibility condition). log|det| = (D − 1)·log(1 + βh) + log(1 + βαh²).
// No closed-form inverse: `has_inverse = false` (forward-only, like Planar).
#include <cmath>

#include "planar.hpp"

namespace biflow {

namespace fn {
struct Sqrt {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return std::sqrt(a); }
};
/// β = softplus(β̂) − softplus(α̂)
struct RadialBeta {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a_raw, T b_raw) const { return softplus(b_raw) - softplus(a_raw); }
};
/// q = β·h = β/(α + r)
struct RadialQ {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T r, T a, T b) const { return b / (a + r); }
};
/// The radial log-det: (D − 1)·log(1 + βh) + log(1 + βαh²).
struct RadialLogdet {
  double dm1;  // D − 1
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T r, T a, T b) const {
    const T h = T(1) / (a + r);
    return T(dm1) * std::log1p(b * h) + std::log1p(b * a * h * h);
  }
};
/// Per row: the coefficient k of (x − x₀) in ∂loss/∂x, k = [gd·(−βh²) + dl·∂L/∂r]/r (0 at r = 0, where the
/// first term vanishes and the log-det's kink has no direction), gd = Σ g·(x − x₀).
struct RadialK {
  double dm1;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T gd, T dl, T r, T a, T b) const {
    if (!(r > T(0))) return T(0);
    const T h = T(1) / (a + r), h2 = h * h;
    const T dld_dr = T(dm1) * b * (-h2) / (T(1) + b * h) + b * a * T(2) * h * (-h2) / (T(1) + b * a * h2);
    return (gd * (-b * h2) + dl * dld_dr) / r;
  }
};
/// Per row ∂loss/∂α (h depends on α; so does the βαh² term).
struct RadialDa {
  double dm1;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T gd, T dl, T r, T a, T b) const {
    const T h = T(1) / (a + r), h2 = h * h;
    const T dld_da = -T(dm1) * b * h2 / (T(1) + b * h) + b * h2 * (T(1) - T(2) * a * h) / (T(1) + b * a * h2);
    return gd * (-b * h2) + dl * dld_da;
  }
};
/// Per row ∂loss/∂β.
struct RadialDb {
  double dm1;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T gd, T dl, T r, T a, T b) const {
    const T h = T(1) / (a + r), h2 = h * h;
    return gd * h + dl * (T(dm1) * h / (T(1) + b * h) + a * h2 / (T(1) + b * a * h2));
  }
};
/// a·b + c·d
struct MulAddMul {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T c, T d) const { return a * b + c * d; }
};
/// ∂loss/∂α̂ = (dα − dβ)·σ(α̂) (β = softplus(β̂) − α); ∂loss/∂β̂ = dβ·σ(β̂).
struct RadialDaRaw {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T da, T db, T a_raw) const { return (da - db) * sigmoid(a_raw); }
};
struct RadialDbRaw {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T db, T b_raw) const { return db * sigmoid(b_raw); }
};
}  // namespace fn

template <Backend B>
class Radial : public FlowLayerBase<Radial<B>, B> {
 public:
  static constexpr const char* layer_name = "Radial";
  static constexpr bool has_inverse = false;
  using T = typename B::scalar;
  struct Context {
    Tensor<B> dx0, r, q;  // x − x₀, ‖x − x₀‖, βh
  };
  Radial() = default;
  /// x₀ ~ N(0, init_scale²/D); α̂, β̂ ~ N(0, 0.1²) (α ≈ β + α ≈ log 2: a mild, random radial contraction/expansion).
  Radial(long d, Rng& rng, double init_scale = 1.0) : d_(d) {
    if (d <= 0) throw usage_error(detail::cat("Radial: features must be positive, got ", d));
    x0 = Parameter<B>(Tensor<B>(1, d));
    alpha_raw = Parameter<B>(Tensor<B>(1, 1));
    beta_raw = Parameter<B>(Tensor<B>(1, 1));
    fill_normal(x0.value, rng, T(0), T(init_scale / std::sqrt(double(d))));
    fill_normal(alpha_raw.value, rng, T(0), T(0.1));
    fill_normal(beta_raw.value, rng, T(0), T(0.1));
  }
  long features() const { return d_; }
  long cond_features() const { return 0; }
  /// α (> 0) and β (> −α), 1 × 1 each.
  std::pair<Tensor<B>, Tensor<B>> alpha_beta() const {
    return {zip(fn::Softplus{}, alpha_raw.value), zip(fn::RadialBeta{}, alpha_raw.value, beta_raw.value)};
  }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, bool want_logdet) const {
    const auto [a, b] = alpha_beta();
    Tensor<B> dx0 = zip(fn::Sub{}, x, x0.value);
    Tensor<B> r = zip(fn::Sqrt{}, row_sum(zip(fn::Square{}, dx0)));
    Tensor<B> q = zip(fn::RadialQ{}, r, a, b);
    FlowOut<B> out{zip(fn::AddMul{}, x, q, dx0),
                   want_logdet ? zip(fn::RadialLogdet{double(d_ - 1)}, r, a, b) : Tensor<B>{}};
    if (ctx) *ctx = Context{std::move(dx0), std::move(r), std::move(q)};
    return out;
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("Radial.backward: dy", dy, ctx.dx0.rows(), d_);
    require_shape("Radial.backward: dlogdet", dlogdet, ctx.dx0.rows(), 1);
    const auto [a, b] = alpha_beta();
    const double dm1 = double(d_ - 1);
    const Tensor<B> gd = row_sum(zip(fn::Mul{}, dy, ctx.dx0));
    const Tensor<B> k = zip(fn::RadialK{dm1}, gd, dlogdet, ctx.r, a, b);
    // e = ∂loss/∂(x − x₀) = g·q + k·(x − x₀); ∂loss/∂x = g + e, ∂loss/∂x₀ = −Σ e.
    const Tensor<B> e = zip(fn::MulAddMul{}, dy, ctx.q, k, ctx.dx0);
    if (wants_grad(mode, x0)) {
      Tensor<B> s;
      col_sum(e, s);
      map(x0.grad, fn::Sub{}, x0.grad, s);
    }
    if (wants_grad(mode, alpha_raw) || wants_grad(mode, beta_raw)) {
      Tensor<B> da, db;
      col_sum(zip(fn::RadialDa{dm1}, gd, dlogdet, ctx.r, a, b), da);
      col_sum(zip(fn::RadialDb{dm1}, gd, dlogdet, ctx.r, a, b), db);
      if (wants_grad(mode, alpha_raw))
        map(alpha_raw.grad, fn::Add{}, alpha_raw.grad, zip(fn::RadialDaRaw{}, da, db, alpha_raw.value));
      if (wants_grad(mode, beta_raw))
        map(beta_raw.grad, fn::Add{}, beta_raw.grad, zip(fn::RadialDbRaw{}, db, beta_raw.value));
    }
    if (!wants_input_grad(mode)) return {};
    return zip(fn::Add{}, dy, e);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "x0"), x0);
    v(join_name(prefix, "alpha_raw"), alpha_raw);
    v(join_name(prefix, "beta_raw"), beta_raw);
  }
  Parameter<B> x0, alpha_raw, beta_raw;

 private:
  long d_ = 0;
};

}  // namespace biflow
