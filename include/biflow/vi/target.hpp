#pragma once
// Unnormalised target densities for variational inference: what ElboTrainer fits a flow to. A target gives
// log p̃(x) and ∇ₓ log p̃(x) per row (the reparameterised ELBO gradient needs the score). Any type with
//   long features() const;  LogDensityGrad<B> log_prob_and_grad(const Tensor<B>& x) const;
// is one (concept UnnormalizedDensity). HostTarget wraps a per-point host function in double; the toy targets of the
// planar-flow literature are built on it: Neal's funnel, a banana, and the energies U1–U4 of Rezende & Mohamed (2015).
// Host targets copy x to the host and the result back: fine for toy problems on any backend; a target for large
// models on a GPU is written with backend primitives instead.
#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <utility>

#include "../backend/ops.hpp"
#include "../core/errors.hpp"

namespace biflow::vi {

template <class B>
struct LogDensityGrad {
  Tensor<B> log_prob;  ///< n x 1: log p̃(x)
  Tensor<B> grad;      ///< n x features: ∇ₓ log p̃(x)
};

template <class P, class B>
concept UnnormalizedDensity = requires(const P& p, const Tensor<B>& x) {
  { p.features() } -> std::convertible_to<long>;
  { p.log_prob_and_grad(x) } -> std::same_as<LogDensityGrad<B>>;
};

/// A 2-D window [x0, x1] × [y0, y1] (plots, quadrature).
struct PlotBox {
  double x0 = -4, x1 = 4, y0 = -4, y1 = 4;
};

/// A target given as a host function of one point: f(x, grad) returns log p̃(x) and writes ∇ log p̃(x) into grad
/// (D doubles). log_z: the known log normaliser ∫p̃ (NaN when unknown); box: a plotting window (2-D).
class HostTarget {
 public:
  using Fn = std::function<double(const double* x, double* grad)>;
  using Box = PlotBox;
  HostTarget(std::string name, long d, Fn f, double log_z = std::numeric_limits<double>::quiet_NaN(), Box box = {})
      : name_(std::move(name)), d_(d), f_(std::move(f)), log_z_(log_z), box_(box) {
    if (d <= 0) throw usage_error(detail::cat("HostTarget '", name_, "': features must be positive, got ", d));
  }
  long features() const { return d_; }
  const std::string& name() const { return name_; }
  double log_z() const { return log_z_; }  ///< the true log normaliser, NaN when unknown
  const Box& box() const { return box_; }

  /// log p̃ of each row (and the gradient when grad != nullptr), in double on the host.
  HostMatrix<double> log_prob(const HostMatrix<double>& x, HostMatrix<double>* grad = nullptr) const {
    if (x.cols() != d_)
      throw shape_error(detail::cat("target '", name_, "': expected ", d_, " features (columns), got ", x.cols()));
    HostMatrix<double> lp(x.rows(), 1), g(x.rows(), d_);
    std::vector<double> row(std::size_t(d_), 0.0), gr(std::size_t(d_), 0.0);
    for (long i = 0; i < x.rows(); ++i) {
      for (long j = 0; j < d_; ++j) row[std::size_t(j)] = x(i, j);
      lp(i, 0) = f_(row.data(), gr.data());
      for (long j = 0; j < d_; ++j) g(i, j) = gr[std::size_t(j)];
    }
    if (grad) *grad = std::move(g);
    return lp;
  }
  template <class B>
  LogDensityGrad<B> log_prob_and_grad(const Tensor<B>& x) const {
    using T = typename B::scalar;
    HostMatrix<double> g;
    const HostMatrix<double> lp = log_prob(to_host(x).template cast<double>(), &g);
    return {from_host<B>(HostMatrix<T>(lp.template cast<T>())), from_host<B>(HostMatrix<T>(g.template cast<T>()))};
  }

 private:
  std::string name_;
  long d_;
  Fn f_;
  double log_z_;
  Box box_;
};

namespace targets {
inline double sigmoid(double a) { return a >= 0 ? 1 / (1 + std::exp(-a)) : std::exp(a) / (1 + std::exp(a)); }
/// log(e^a + e^b) and the weights e^a/(…), e^b/(…).
inline double lse2(double a, double b, double& pa, double& pb) {
  const double m = std::max(a, b);
  if (m == -std::numeric_limits<double>::infinity()) {
    pa = pb = 0.5;
    return m;
  }
  const double ea = std::exp(a - m), eb = std::exp(b - m);
  pa = ea / (ea + eb);
  pb = eb / (ea + eb);
  return m + std::log(ea + eb);
}

/// Neal's funnel in D dimensions: v ~ N(0, σ_v²), x_i | v ~ N(0, eᵛ) (i = 1..D−1). log p̃ leaves out the 2π
/// factors, so log Z = ½·log(2πσ_v²) + (D−1)/2·log 2π is known exactly.
inline HostTarget funnel(long d = 2, double sigma_v = 3.0) {
  if (d < 2) throw usage_error(detail::cat("funnel: needs at least 2 dimensions (v and one x), got ", d));
  const double s2 = sigma_v * sigma_v;
  const double log_z = 0.5 * std::log(2 * std::numbers::pi * s2) + 0.5 * double(d - 1) * std::log(2 * std::numbers::pi);
  return HostTarget("funnel", d, [d, s2](const double* x, double* g) {
    const double v = x[0], ev = std::exp(-v);
    double lp = -v * v / (2 * s2), dv = -v / s2;
    for (long i = 1; i < d; ++i) {
      lp += -0.5 * x[i] * x[i] * ev - 0.5 * v;
      dv += 0.5 * x[i] * x[i] * ev - 0.5;
      g[i] = -x[i] * ev;
    }
    g[0] = dv;
    return lp;
  }, log_z, {-9, 9, -12, 12});
}

/// A banana: x₁ ~ N(0, 1.5²), x₂ | x₁ ~ N(0.4·(x₁² − 1.5²), 0.5²). log p̃ leaves out 2π·1.5·0.5 (so log Z is known).
inline HostTarget banana() {
  constexpr double s1 = 1.5, s2 = 0.5, b = 0.4;
  return HostTarget("banana", 2, [](const double* x, double* g) {
    const double a = x[0], c = x[1], m = b * (a * a - s1 * s1), e = c - m;
    g[0] = -a / (s1 * s1) + e / (s2 * s2) * 2 * b * a;
    g[1] = -e / (s2 * s2);
    return -a * a / (2 * s1 * s1) - e * e / (2 * s2 * s2);
  }, std::log(2 * std::numbers::pi * s1 * s2), {-5, 5, -3, 6});
}

/// The 2-D energies U1–U4 of Rezende & Mohamed (2015, table 1); log p̃ = −U. U2–U4 do not decay along z₁ (they are
/// improper on ℝ²; the paper draws them on [−4, 4]²), so a wall ½·(max(|z₁| − 4, 0)/0.2)² is added to them: the
/// published energy inside the window, a proper density overall. log Z is unknown (quadrature_log_z gives it).
inline HostTarget energy(int k) {
  if (k < 1 || k > 4) throw usage_error(detail::cat("energy: U1..U4, got U", k));
  return HostTarget("u" + std::to_string(k), 2, [k](const double* z, double* g) {
    const double a = z[0], c = z[1], pi = std::numbers::pi;
    const double w1 = std::sin(pi * a / 2), dw1 = pi / 2 * std::cos(pi * a / 2);
    double U = 0, ga = 0, gc = 0;  // U and ∇U
    if (k == 1) {
      const double r = std::sqrt(a * a + c * c);
      double p1, p2;
      const double e1 = -0.5 * (a - 2) * (a - 2) / 0.36, e2 = -0.5 * (a + 2) * (a + 2) / 0.36;
      U = 0.5 * (r - 2) * (r - 2) / 0.16 - lse2(e1, e2, p1, p2);
      const double dr = r > 0 ? (r - 2) / 0.16 / r : 0.0;
      ga = dr * a - (p1 * (-(a - 2) / 0.36) + p2 * (-(a + 2) / 0.36));
      gc = dr * c;
    } else if (k == 2) {
      const double e = c - w1;
      U = 0.5 * e * e / 0.16;
      gc = e / 0.16;
      ga = -e / 0.16 * dw1;
    } else {
      // U3: branches at w1 and w1 − w2 (σ 0.35 both); U4: at w1 (σ 0.4) and w1 − w3 (σ 0.35).
      const double s1 = k == 3 ? 0.35 : 0.4;
      double w, dw;
      if (k == 3) {
        w = 3 * std::exp(-0.5 * (a - 1) * (a - 1) / 0.36);
        dw = w * (-(a - 1) / 0.36);
      } else {
        const double sg = sigmoid((a - 1) / 0.3);
        w = 3 * sg;
        dw = 3 * sg * (1 - sg) / 0.3;
      }
      const double e1 = c - w1, e2 = c - w1 + w;
      const double f1 = -0.5 * e1 * e1 / (s1 * s1), f2 = -0.5 * e2 * e2 / (0.35 * 0.35);
      double p1, p2;
      U = -lse2(f1, f2, p1, p2);
      // ∇f1 = (e1/s1²·w1', −e1/s1²), ∇f2 = (−e2/0.35²·(w' − w1'), −e2/0.35²)
      ga = -(p1 * (e1 / (s1 * s1) * dw1) + p2 * (-e2 / (0.35 * 0.35) * (dw - dw1)));
      gc = -(p1 * (-e1 / (s1 * s1)) + p2 * (-e2 / (0.35 * 0.35)));
    }
    if (k >= 2) {
      const double out = std::max(std::abs(a) - 4.0, 0.0);
      U += 0.5 * out * out / 0.04;
      ga += (a > 0 ? 1.0 : -1.0) * out / 0.04;
    }
    g[0] = -ga;
    g[1] = -gc;
    return -U;
  }, std::numeric_limits<double>::quiet_NaN(), {-5, 5, -5, 5});
}

/// By name: "funnel" (dimension d), "banana", "u1".."u4".
inline HostTarget by_name(const std::string& name, long d = 2) {
  if (name == "funnel") return funnel(d);
  if (name == "banana") return banana();
  if (name.size() == 2 && name[0] == 'u' && name[1] >= '1' && name[1] <= '4') return energy(name[1] - '0');
  throw usage_error("vi target: expected funnel, banana or u1..u4, got '" + name + "'");
}
}  // namespace targets

/// log ∫ p̃ over the window [x0, x1] × [y0, y1] by the midpoint rule on an n × n grid (2-D targets): the reference
/// log Z for targets whose normaliser is not known in closed form. Mass outside the window is missed.
inline double quadrature_log_z(const HostTarget& t, const PlotBox& w, long n = 1000) {
  if (t.features() != 2) throw usage_error("quadrature_log_z: 2-D targets only, got " + std::to_string(t.features()));
  const double hx = (w.x1 - w.x0) / double(n), hy = (w.y1 - w.y0) / double(n);
  HostMatrix<double> pts(n, 2);
  double m = -std::numeric_limits<double>::infinity(), s = 0;  // streaming log-sum-exp
  for (long i = 0; i < n; ++i) {
    for (long j = 0; j < n; ++j) pts.row(j) << w.x0 + (double(i) + 0.5) * hx, w.y0 + (double(j) + 0.5) * hy;
    const HostMatrix<double> lp = t.log_prob(pts);
    for (long j = 0; j < n; ++j) {
      const double v = lp(j, 0);
      if (!(v > -std::numeric_limits<double>::infinity())) continue;
      if (v > m) {
        s = s * std::exp(m - v) + 1;
        m = v;
      } else {
        s += std::exp(v - m);
      }
    }
  }
  return m + std::log(s) + std::log(hx * hy);
}

}  // namespace biflow::vi
