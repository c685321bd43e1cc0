#pragma once
// Residual flow (invertible ResNet; Behrmann et al. 2019, Chen et al. 2019): y = x + g(x), g an MLP with tanh units
// whose linear maps are spectrally normalised to Lipschitz constant ≤ c < 1, so x ↦ y is invertible.
//   - Spectral normalisation: W̃ = W·min(1, c/σ̂), σ̂ = uᵀWv from power iteration. The vectors u, v are buffers (saved
//     in checkpoints). Every forward uses the stored vectors, so the training and inference passes agree exactly;
//     a training backward (any mode but input_only) then advances them `power_iterations` steps on the current
//     weights, tracking W as it trains (one step behind, as PyTorch's spectral_norm is within a step). After
//     changing weights by hand, refresh_spectral_norm() converges them again (the constructor does).
//   - Inverse: the fixed point x = y − g(x) (a contraction), from x₀ = y, until max |Δx| ≤ tol or max_iterations; a
//     run that does not converge throws numeric_error, or fills a residual::FixedPointReport when the inverse is
//     called with a residual::FixedPoint option.
//   - Log-det log det(I + J_g) by the log-det policy: logdet::analytic is exact (D vector-Jacobian products and a
//     D × D LU per sample on the host: small D only); logdet::Hutchinson<K> / RussianRoulette<K> estimate the power
//     series Σₖ (−1)^{k+1} tr(Jᵏ)/k with K Gaussian probes (truncated: biased; roulette: unbiased). The gradient of
//     the log-det uses the Neumann-series trick of Chen et al.: ∂ log det(I + J) = tr((I + J)⁻¹ ∂J) with
//     (I + J)⁻¹ ≈ Σₖ (−J)ᵏ under the same truncation / roulette weights (exactly the LU inverse under analytic), so
//     no graph of the series is kept: uᵀ(∂J)v is differentiated by one forward-mode tangent pass per probe.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "flow_layer.hpp"
#include "planar.hpp"  // fn::TanhAdd

namespace biflow {

namespace residual {
/// Inverse option: tolerance and cap for the fixed-point iteration, and where to report instead of throwing.
struct FixedPointReport {
  long iterations = 0;
  double max_change = 0;  ///< max |x_{k+1} − x_k| at the last iteration
  bool converged = false;
};
struct FixedPoint {
  double tol = 0;             ///< 0: the layer's own tolerance
  long max_iterations = 0;    ///< 0: the layer's own cap
  FixedPointReport* report = nullptr;  ///< non-null: report here (and do not throw on non-convergence)
};
struct Options {
  std::vector<long> hidden{64, 64};
  double lipschitz = 0.9;      ///< c: the bound on each linear map's spectral norm (tanh is 1-Lipschitz)
  long power_iterations = 1;   ///< per training forward
  double inverse_tol = 0;      ///< 0: 1e-10 in double, 1e-5 in float
  long inverse_max_iterations = 200;
};
}  // namespace residual

namespace fn {
/// 1/‖row‖ as a 1 × 1 (a zero row stays zero).
struct InvSqrtOrZero {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return a > T(0) ? T(1) / std::sqrt(a) : T(0); }
};
/// The spectral scale min(1, c/σ).
struct SnScale {
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T sigma) const { return sigma > T(c) ? T(c) / sigma : T(1); }
};
/// ∂W from ∂W̃ through W̃ = W·min(1, c/σ), σ = uᵀWv (u, v constants): s·G + [σ > c]·(−c·⟨G, W⟩/σ²)·uvᵀ.
struct SnGrad {
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T g, T s, T gw, T sigma, T uv) const {
    return sigma > T(c) ? s * g - T(c) * gw / (sigma * sigma) * uv : g;
  }
};
struct TanhD1 {  // tanh′(a) from t = tanh(a)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T t) const { return T(1) - t * t; }
};
/// ā for the residual MLP's combined reverse sweep: primal adjoint ·tanh′ + tangent adjoint ·tanh″·ȧ.
struct ResidualABar {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T acc, T tbar, T t, T adot) const {
    return acc + tbar * (T(-2) * t * (T(1) - t * t)) * adot;
  }
};
}  // namespace fn

template <Backend B>
class Residual : public FlowLayerBase<Residual<B>, B> {
 public:
  static constexpr const char* layer_name = "Residual";
  using T = typename B::scalar;
  /// One spectrally normalised linear map as used in a pass.
  struct Normed {
    Tensor<B> w;                   // W̃ (out × in)
    Tensor<B> u, v, sigma, scale;  // power-iteration vectors used, σ̂, min(1, c/σ̂)
  };
  /// The primal pass of g at x.
  struct GPass {
    std::vector<Normed> lin;
    std::vector<Tensor<B>> h;  // h[0] = x, h[l] = tanh(a_l) for the hidden layers
  };
  /// A log-det probe kept for the gradient: input direction v, Neumann row u (N × D), and the tangent ȧ per layer.
  struct Probe {
    Tensor<B> v, u;
    std::vector<Tensor<B>> adot;
  };
  struct Context {
    GPass g;
    std::vector<Probe> probes;
    double probe_weight = 1;  // 1/K for stochastic estimates, 1 for the exact one
  };

  Residual() = default;
  Residual(long d, Rng& rng, residual::Options o = {}) : d_(d), o_(std::move(o)) {
    if (d <= 0) throw usage_error(detail::cat("Residual: features must be positive, got ", d));
    if (!(o_.lipschitz > 0 && o_.lipschitz < 1))
      throw usage_error(detail::cat("Residual: the Lipschitz bound must be in (0, 1) for invertibility, got ", o_.lipschitz));
    if (o_.power_iterations < 1) throw usage_error("Residual: power_iterations must be at least 1");
    if (o_.inverse_tol <= 0) o_.inverse_tol = std::is_same_v<T, double> ? 1e-10 : 1e-5;
    std::vector<long> sizes{d};
    sizes.insert(sizes.end(), o_.hidden.begin(), o_.hidden.end());
    sizes.push_back(d);
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
      const long in = sizes[l], out = sizes[l + 1];
      Parameter<B> w(Tensor<B>(out, in)), b(Tensor<B>(1, out));
      fill_normal(w.value, rng, T(0), T(1.0 / std::sqrt(double(in))));
      weight.push_back(std::move(w));
      bias.push_back(std::move(b));
      Tensor<B> u(1, out), v(1, in);
      fill_normal(u, rng);
      sn_u_.push_back(normalize(u));
      sn_v_.push_back(v);
    }
    refresh_spectral_norm();
  }
  /// Runs the power iteration of every linear map until σ̂ changes by less than 1e-12 relative (or `cap` steps):
  /// after setting weights by hand. (Loading a checkpoint restores the saved vectors instead.)
  void refresh_spectral_norm(long cap = 2000) {
    for (std::size_t l = 0; l < weight.size(); ++l) {
      double prev = -1;
      for (long i = 0; i < cap; ++i) {
        power_step(weight[l].value, sn_u_[l], sn_v_[l]);
        const double s = double(to_host(matmul(matmul(sn_u_[l], false, weight[l].value, false), false, sn_v_[l], true))(0, 0));
        if (std::abs(s - prev) <= 1e-12 * std::abs(s)) break;
        prev = s;
      }
    }
  }
  long features() const { return d_; }
  long cond_features() const { return 0; }
  const residual::Options& options() const { return o_; }
  /// Upper bound on Lip(g) from the stored spectral estimates: Π_l min(σ̂_l, c) (tanh is 1-Lipschitz).
  double lipschitz_bound() const {
    double b = 1;
    for (std::size_t l = 0; l < weight.size(); ++l) {
      const double s = double(to_host(matmul(matmul(sn_u_[l], false, weight[l].value, false), false, sn_v_[l], true))(0, 0));
      b *= std::min(std::abs(s), o_.lipschitz);
    }
    return b;
  }

  template <LogDetPolicy P>
  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, const P& policy) const {
    GPass g = g_forward(x);
    FlowOut<B> out{zip(fn::Add{}, x, g.h.empty() ? x : g_output(g)), {}};
    if constexpr (P::compute) {
      std::vector<Probe> probes;
      double weight_per_probe = 1;
      out.logdet = logdet_estimate(g, policy, ctx ? &probes : nullptr, weight_per_probe);
      if (ctx) {
        ctx->probes = std::move(probes);
        ctx->probe_weight = weight_per_probe;
      }
    }
    if (ctx) ctx->g = std::move(g);
    return out;
  }
  template <LogDetPolicy P>
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>& cond, const P& policy) const {
    return inverse_impl(y, cond, policy, residual::FixedPoint{});
  }
  template <LogDetPolicy P>
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>&, const P& policy, const residual::FixedPoint& fp) const {
    const double tol = fp.tol > 0 ? fp.tol : o_.inverse_tol;
    const long cap = fp.max_iterations > 0 ? fp.max_iterations : o_.inverse_max_iterations;
    Tensor<B> x = y;
    residual::FixedPointReport rep;
    for (rep.iterations = 1; rep.iterations <= cap; ++rep.iterations) {
      Tensor<B> next = zip(fn::Sub{}, y, g_output(g_forward(x)));
      const HostMatrix<T> diff = to_host(zip(fn::Sub{}, next, x));
      rep.max_change = diff.size() ? double(diff.cwiseAbs().maxCoeff()) : 0.0;
      x = std::move(next);
      if (!std::isfinite(rep.max_change)) break;
      if (rep.max_change <= tol) {
        rep.converged = true;
        break;
      }
    }
    rep.iterations = std::min(rep.iterations, cap);
    if (fp.report) *fp.report = rep;
    else if (!rep.converged)
      throw numeric_error(detail::cat("Residual.inverse: the fixed-point iteration did not converge in ", cap,
                                      " iterations (last max |Δx| = ", rep.max_change, ", tolerance ", tol,
                                      "); Lip(g) ≤ ", lipschitz_bound(), " from the spectral estimates"));
    FlowOut<B> out{std::move(x), {}};
    if constexpr (P::compute) {
      double w = 1;
      out.logdet = logdet_estimate(g_forward(out.y), policy, nullptr, w);
      map(out.logdet, fn::Neg{}, out.logdet);
    }
    return out;
  }

  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet, GradMode mode = GradMode::all) {
    const GPass& g = ctx.g;
    if (g.h.empty()) throw usage_error("Residual.backward: the context does not come from a training forward");
    const long N = g.h[0].rows();
    require_shape("Residual.backward: dy", dy, N, d_);
    require_shape("Residual.backward: dlogdet", dlogdet, N, 1);
    const std::size_t L = weight.size();
    const bool params = std::any_of(weight.begin(), weight.end(), [&](const Parameter<B>& p) { return wants_grad(mode, p); }) ||
                        std::any_of(bias.begin(), bias.end(), [&](const Parameter<B>& p) { return wants_grad(mode, p); });
    // Combined reverse sweep: primal adjoint hbar (from dy) and one tangent adjoint per probe (from dlogdet·u).
    Tensor<B> hbar = dy;
    std::vector<Tensor<B>> tbar;
    for (const Probe& p : ctx.probes) tbar.push_back(zip(fn::Mul{}, p.u, zip(fn::Scale{ctx.probe_weight}, dlogdet)));
    // Tangent values ṫ_{l} = tanh′(a_l)·ȧ_l (ṫ_0 = v).
    auto tdot = [&](const Probe& p, std::size_t l) -> Tensor<B> {
      return l == 0 ? p.v : zip(fn::Mul{}, zip(fn::TanhD1{}, g.h[l]), p.adot[l - 1]);
    };
    for (std::size_t i = L; i-- > 0;) {
      const Tensor<B>& wt = g.lin[i].w;
      // Adjoint of a_{i+1} (the output of linear i): hbar for the output layer, else through tanh.
      Tensor<B> abar;
      std::vector<Tensor<B>> adotbar(tbar.size());
      if (i + 1 == L) {
        abar = hbar;
        for (std::size_t p = 0; p < tbar.size(); ++p) adotbar[p] = tbar[p];
      } else {
        const Tensor<B>& t = g.h[i + 1];
        abar = zip(fn::Mul{}, hbar, zip(fn::TanhD1{}, t));
        for (std::size_t p = 0; p < tbar.size(); ++p) {
          abar = zip(fn::ResidualABar{}, abar, tbar[p], t, ctx.probes[p].adot[i]);
          adotbar[p] = zip(fn::Mul{}, tbar[p], zip(fn::TanhD1{}, t));
        }
      }
      if (params) {
        Tensor<B> dw = matmul(abar, true, g.h[i], false);
        for (std::size_t p = 0; p < tbar.size(); ++p) add_inplace(dw, matmul(adotbar[p], true, tdot(ctx.probes[p], i), false));
        if (wants_grad(mode, weight[i])) map(weight[i].grad, fn::Add{}, weight[i].grad, sn_backward(g.lin[i], weight[i].value, dw));
        if (wants_grad(mode, bias[i])) col_sum(abar, bias[i].grad, T(1));  // accumulates
      }
      if (i > 0 || wants_input_grad(mode)) {
        hbar = matmul(abar, false, wt, false);
        for (std::size_t p = 0; p < tbar.size(); ++p) tbar[p] = matmul(adotbar[p], false, wt, false);
      }
    }
    // Training advances the power iteration on the current weights (never under input_only: that mode leaves the
    // layer alone).
    if (mode != GradMode::input_only)
      for (std::size_t l = 0; l < L; ++l)
        for (long i = 0; i < o_.power_iterations; ++i) power_step(weight[l].value, sn_u_[l], sn_v_[l]);
    if (!wants_input_grad(mode)) return {};
    return zip(fn::Add{}, dy, hbar);
  }

  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    for (std::size_t l = 0; l < weight.size(); ++l) {
      const std::string n = join_name(join_name(prefix, "net"), std::to_string(2 * l));
      v(join_name(n, "weight"), weight[l]);
      v(join_name(n, "bias"), bias[l]);
    }
  }
  /// The power-iteration vectors (not structural: a checkpoint's values are adopted).
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    for (std::size_t l = 0; l < weight.size(); ++l) {
      const std::string n = join_name(join_name(prefix, "net"), std::to_string(2 * l));
      v(join_name(n, "sn_u"), tensor_buffer(sn_u_[l], [this, l](Tensor<B> t) { sn_u_[l] = std::move(t); }, false));
      v(join_name(n, "sn_v"), tensor_buffer(sn_v_[l], [this, l](Tensor<B> t) { sn_v_[l] = std::move(t); }, false));
    }
  }
  std::vector<Parameter<B>> weight, bias;

 private:
  static Tensor<B> normalize(const Tensor<B>& r) {
    return zip(fn::Mul{}, r, zip(fn::InvSqrtOrZero{}, row_sum(zip(fn::Square{}, r))));
  }
  /// v ← normalize(u·W), u ← normalize(v·Wᵀ).
  static void power_step(const Tensor<B>& w, Tensor<B>& u, Tensor<B>& v) {
    v = normalize(matmul(u, false, w, false));
    u = normalize(matmul(v, false, w, true));
  }
  Normed normed(std::size_t l) const {
    Normed n{{}, sn_u_[l], sn_v_[l], {}, {}};
    n.sigma = matmul(matmul(n.u, false, weight[l].value, false), false, n.v, true);
    n.scale = zip(fn::SnScale{o_.lipschitz}, n.sigma);
    n.w = zip(fn::Mul{}, weight[l].value, n.scale);
    return n;
  }
  Tensor<B> sn_backward(const Normed& n, const Tensor<B>& w, const Tensor<B>& dwt) const {
    Tensor<B> gw;
    col_sum(row_sum(zip(fn::Mul{}, dwt, w)), gw);  // ⟨∂W̃, W⟩ as 1 × 1
    return zip(fn::SnGrad{o_.lipschitz}, dwt, n.scale, gw, n.sigma, matmul(n.u, true, n.v, false));
  }
  GPass g_forward(const Tensor<B>& x) const {
    GPass g;
    g.h.push_back(x);
    for (std::size_t l = 0; l < weight.size(); ++l) {
      g.lin.push_back(normed(l));
      if (l + 1 < weight.size()) {
        Tensor<B> a = matmul(g.h.back(), false, g.lin.back().w, true);
        g.h.push_back(zip(fn::TanhAdd{}, a, bias[l].value));
      }
    }
    return g;
  }
  Tensor<B> g_output(const GPass& g) const {
    Tensor<B> out = matmul(g.h.back(), false, g.lin.back().w, true);
    map(out, fn::Add{}, out, bias.back().value);
    return out;
  }
  /// w·J_g at the pass g (row vectors, N × D): the input-only backward of g.
  Tensor<B> vjp(const GPass& g, const Tensor<B>& w) const {
    Tensor<B> hb = w;
    for (std::size_t i = weight.size(); i-- > 0;) {
      if (i + 1 < weight.size()) hb = zip(fn::Mul{}, hb, zip(fn::TanhD1{}, g.h[i + 1]));
      hb = matmul(hb, false, g.lin[i].w, false);
    }
    return hb;
  }
  /// The tangents ȧ_l of the hidden layers for input direction v (forward mode).
  std::vector<Tensor<B>> tangents(const GPass& g, const Tensor<B>& v) const {
    std::vector<Tensor<B>> adot;
    Tensor<B> t = v;
    for (std::size_t l = 0; l + 1 < weight.size(); ++l) {
      adot.push_back(matmul(t, false, g.lin[l].w, true));
      t = zip(fn::Mul{}, zip(fn::TanhD1{}, g.h[l + 1]), adot.back());
    }
    return adot;
  }
  template <class P>
  Tensor<B> logdet_estimate(const GPass& g, const P& policy, std::vector<Probe>* probes, double& probe_weight) const {
    const long N = g.h[0].rows();
    if constexpr (is_stochastic_policy<P>) {
      if (!policy.rng) throw usage_error("Residual: a stochastic log-det policy needs an Rng (policy.rng)");
      const long n = policy.draw_terms();
      Tensor<B> est(N, 1);
      probe_weight = 1.0 / double(P::probes);
      for (int k = 0; k < P::probes; ++k) {
        Tensor<B> v(N, d_);
        fill_normal(v, *policy.rng);
        // w = vJʲ; u = Σ_{j<n} (−1)ʲ c_{j+1} vJʲ (the Neumann row for the gradient).
        Tensor<B> w = v, u = zip(fn::Scale{policy.weight(1)}, v);
        for (long j = 1; j <= n; ++j) {
          w = vjp(g, w);
          const double c = (j % 2 ? 1.0 : -1.0) * policy.weight(j) / double(j) / double(P::probes);
          map(est, fn::Axpby{1.0, c}, est, row_sum(zip(fn::Mul{}, w, v)));
          if (probes && j < n) map(u, fn::Axpby{1.0, (j % 2 ? -1.0 : 1.0) * policy.weight(j + 1)}, u, w);
        }
        if (probes) probes->push_back(Probe{v, std::move(u), tangents(g, v)});
      }
      return est;
    } else {
      // Exact: rows e_i·J for i < D, then per sample log|det(I + J)| and (I + J)⁻¹ on the host (double).
      std::vector<HostMatrix<double>> rows;
      for (long i = 0; i < d_; ++i) {
        HostMatrix<T> e = HostMatrix<T>::Zero(N, d_);
        e.col(i).setOnes();
        rows.push_back(to_host(vjp(g, from_host<B>(e))).template cast<double>());
      }
      HostMatrix<double> ld(N, 1);
      std::vector<HostMatrix<double>> inv_rows(std::size_t(d_), HostMatrix<double>(N, d_));
      for (long b = 0; b < N; ++b) {
        HostMatrix<double> m(d_, d_);
        for (long i = 0; i < d_; ++i) m.row(i) = rows[std::size_t(i)].row(b);
        m += HostMatrix<double>::Identity(d_, d_);
        const linalg::LogDetInverse li = linalg::logdet_and_inverse(m);
        ld(b, 0) = li.logabsdet;
        if (probes)
          for (long i = 0; i < d_; ++i) inv_rows[std::size_t(i)].row(b) = li.inverse.row(i);
      }
      if (probes) {
        probe_weight = 1;
        for (long i = 0; i < d_; ++i) {
          HostMatrix<T> e = HostMatrix<T>::Zero(N, d_);
          e.col(i).setOnes();
          const Tensor<B> v = from_host<B>(e);
          probes->push_back(Probe{v, from_host<B>(HostMatrix<T>(inv_rows[std::size_t(i)].template cast<T>())), tangents(g, v)});
        }
      }
      return from_host<B>(HostMatrix<T>(ld.template cast<T>()));
    }
  }

  long d_ = 0;
  residual::Options o_;
  std::vector<Tensor<B>> sn_u_, sn_v_;
};

}  // namespace biflow
