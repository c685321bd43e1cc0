#pragma once
// biflow::testing — the numerical checker every biflow layer passes, public so users verify their own
// layers the same way (see examples/custom_flow.cpp). Independent of any test framework: it returns a
// report, the caller asserts on it.
//   - round trip: max |f⁻¹(f(x)) − x|
//   - log-det: analytic forward log-det vs log|det J| of a central-difference Jacobian of forward, and the
//     analytic inverse log-det vs the same for the inverse map (both directions); also the BruteForce policy
//   - gradients: backward's input and parameter gradients vs central finite differences of
//     L = Σ r₁∘y + Σ r₂∘logdet with fixed random r₁, r₂
// Every check runs at `probes` input points (x itself, then x plus Gaussian noise of half x's scale) and reports the
// worst. Parameters: every entry of a tensor with at most max_entries_per_param entries, otherwise that many
// entries drawn at random (all rows and columns can be hit, not a fixed stride).
// A layer at the identity (zero-initialised output layers, as couplings, MAF and TARFlow blocks start) passes a
// wrong log-det trivially: the report flags it (`at_identity`) — randomise the weights first.
// Use double precision (Cpu<double>) for the derivative checks.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../flow/flow_layer.hpp"
#include "../nn/module.hpp"

namespace biflow::testing {

struct CheckOptions {
  double fd_step = 1e-5;            ///< central-difference step (≈ cube root of double epsilon: truncation and rounding balance)
  long max_entries_per_param = 64;  ///< parameter entries probed per tensor (all of a small one, else at random)
  std::uint64_t seed = 1234;
  long probes = 3;                  ///< input points checked: x and probes − 1 perturbed copies of it
  double probe_scale = 0.5;         ///< perturbation: N(0, (probe_scale · RMS of x)²) per entry
};

struct CheckReport {
  bool inverse_checked = true;        ///< false for a layer without an inverse (round trip and inverse log-det skipped)
  double roundtrip_error = 0;         ///< max |f⁻¹(f(x)) − x|
  double logdet_forward_error = 0;    ///< max |analytic − slogdet(FD Jacobian of forward)|
  double logdet_inverse_error = 0;    ///< same for the inverse map
  double logdet_bruteforce_error = 0; ///< max |analytic − logdet::BruteForce| (Jacobian from backward)
  double input_grad_error = 0;        ///< max relative error of dx vs finite differences
  double param_grad_error = 0;        ///< max relative error of parameter gradients vs finite differences
  double inference_error = 0;         ///< max |inference forward − training forward| (output and log-det)
  double grad_mode_error = 0;         ///< max deviation of input_only / params_only backward from the full one:
                                      ///< dx under input_only, parameter gradients under params_only, and any
                                      ///< change input_only made to a parameter gradient (must leave them alone)
  double context_reuse_error = 0;     ///< max deviation of output, dx and parameter gradients when the context was
                                      ///< used before on another batch (trainers keep one context across steps, so
                                      ///< forward must rewrite everything backward reads)
  long params_checked = 0;            ///< parameter entries probed
  std::string worst_param;            ///< name of the parameter with the largest gradient error
  long probes = 0;                    ///< input points checked
  bool at_identity = false;           ///< the Jacobian is the identity at every probe: the checks prove nothing
  std::string summary() const {
    std::ostringstream s;
    if (!inverse_checked) s << "no inverse (forward only: round trip and inverse log-det not applicable); ";
    s << "roundtrip " << roundtrip_error << ", logdet fwd " << logdet_forward_error << ", logdet inv "
      << logdet_inverse_error << ", bruteforce " << logdet_bruteforce_error << ", dx " << input_grad_error
 << ", dparams " << param_grad_error << ", inference " << inference_error << ", grad modes " << grad_mode_error << ", context reuse " << context_reuse_error << " (" << params_checked << " entries; worst: " << worst_param << "), "
      << probes << " probe points";
    if (at_identity) s << "; AT IDENTITY (Jacobian = I): randomise the weights first, the checks prove nothing here";
    return s.str();
  }
};

namespace detail {
inline double rel_err(double a, double b) { return std::abs(a - b) / std::max(1.0, std::max(std::abs(a), std::abs(b))); }

template <class T>
HostMatrix<T> random_host(long r, long c, Rng& rng) {
  HostMatrix<T> m(r, c);
  for (long i = 0; i < m.size(); ++i) m.data()[i] = T(rng.normal());
  return m;
}

/// Central-difference Jacobian of a row-wise map g (host in, host out), stacked per sample.
template <class T, class G>
HostMatrix<T> fd_jacobian(const HostMatrix<T>& x, G&& g, double h) {
  const long R = x.rows(), D = x.cols();
  HostMatrix<T> jac(R * D, D);
  for (long j = 0; j < D; ++j) {
    HostMatrix<T> xp = x, xm = x;
    xp.col(j).array() += T(h);
    xm.col(j).array() -= T(h);
    const HostMatrix<T> yp = g(xp), ym = g(xm);
    for (long b = 0; b < R; ++b)
      for (long i = 0; i < D; ++i) jac(b * D + i, j) = (yp(b, i) - ym(b, i)) / T(2 * h);
  }
  return jac;
}

/// Runs the parameter gradient check: analytic grads from `grads`, loss from `loss()` re-evaluated with
/// perturbed parameters of `model`.
/// Which entries of an n-entry tensor to probe: all if n <= m, else m distinct ones at random.
inline std::vector<long> entries(long n, long m, Rng& rng) {
  if (n > m) return choose_distinct(n, m, rng);
  std::vector<long> idx(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) idx[std::size_t(i)] = i;
  return idx;
}

/// x, then x + N(0, s²) (s = scale · RMS of x, or scale) for the remaining probe points.
template <class B>
std::vector<Tensor<B>> probe_points(const Tensor<B>& x, long probes, double scale, Rng& rng) {
  using T = typename B::scalar;
  std::vector<Tensor<B>> out{x};
  const HostMatrix<T> h = to_host(x);
  const double s = h.size() ? std::sqrt(double(h.squaredNorm()) / double(h.size())) : 1.0;
  for (long p = 1; p < probes; ++p) {
    HostMatrix<T> q = h;
    for (long i = 0; i < q.size(); ++i) q.data()[i] += T(scale * (s > 0 ? s : 1.0) * rng.normal());
    out.push_back(from_host<B>(q));
  }
  return out;
}

template <class M, class Loss>
void check_param_grads(M& model, const std::vector<HostMatrix<double>>& analytic, Loss&& loss, const CheckOptions& o,
                       CheckReport& rep, Rng& rng) {
  std::size_t k = 0;
  model.visit_parameters([&](const std::string& name, auto& p) {
    using B = typename std::decay_t<decltype(p.value)>::backend;
    using T = typename B::scalar;
    HostMatrix<T> v = to_host(p.value);
    for (const long i : entries(v.size(), o.max_entries_per_param, rng)) {
      const T keep = v.data()[i];
      v.data()[i] = keep + T(o.fd_step);
      p.value = from_host<B>(v);
      const double lp = loss();
      v.data()[i] = keep - T(o.fd_step);
      p.value = from_host<B>(v);
      const double lm = loss();
      v.data()[i] = keep;
      p.value = from_host<B>(v);
      const double e = rel_err((lp - lm) / (2 * o.fd_step), analytic[k].data()[i]);
      ++rep.params_checked;
      if (e > rep.param_grad_error) rep.param_grad_error = e, rep.worst_param = name;
    }
    ++k;
  }, "");
}

/// The same, with the entry choice drawn from o.seed.
template <class M, class Loss>
void check_param_grads(M& model, const std::vector<HostMatrix<double>>& analytic, Loss&& loss, const CheckOptions& o,
                       CheckReport& rep) {
  Rng rng(o.seed);
  check_param_grads(model, analytic, std::forward<Loss>(loss), o, rep, rng);
}

/// Max relative error of the analytic input gradient dx against central differences of loss_at.
template <class B, class Loss>
double input_grad_error(const Tensor<B>& x, const HostMatrix<typename B::scalar>& dx, Loss&& loss_at, double h) {
  using T = typename B::scalar;
  HostMatrix<T> xh = to_host(x);
  double worst = 0;
  for (long i = 0; i < xh.size(); ++i) {
    const T keep = xh.data()[i];
    xh.data()[i] = keep + T(h);
    const double lp = loss_at(from_host<B>(xh));
    xh.data()[i] = keep - T(h);
    const double lm = loss_at(from_host<B>(xh));
    xh.data()[i] = keep;
    worst = std::max(worst, rel_err((lp - lm) / (2 * h), dx.data()[i]));
  }
  return worst;
}

template <class M>
std::vector<HostMatrix<double>> grads_of(M& model) {
  std::vector<HostMatrix<double>> g;
  model.visit_parameters([&](const std::string&, auto& p) { g.push_back(to_host(p.grad).template cast<double>()); }, "");
  return g;
}
inline double max_abs_diff(const std::vector<HostMatrix<double>>& a, const std::vector<HostMatrix<double>>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (a[i].size()) worst = std::max(worst, (a[i] - b[i]).cwiseAbs().maxCoeff());
  return worst;
}
template <class B>
double max_abs_diff(const Tensor<B>& a, const Tensor<B>& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return std::numeric_limits<double>::infinity();
  if (a.empty()) return 0;
  return double((to_host(a) - to_host(b)).cwiseAbs().maxCoeff());
}
/// The gradient modes against the full backward run just before: `full_dx` and `full` (parameter gradients, as
/// left in the model) came from GradMode::all; backward_as(mode) runs backward again on the same context.
template <class M, class Backward>
double grad_mode_deviation(M& model, const HostMatrix<double>& full_dx, const std::vector<HostMatrix<double>>& full,
                           Backward&& backward_as) {
  double worst = 0;
  const HostMatrix<double> dx_in = to_host(backward_as(GradMode::input_only)).template cast<double>();
  worst = std::max(worst, max_abs_diff(grads_of(model), full));  // input_only must not touch them
  worst = std::max(worst, dx_in.rows() == full_dx.rows() && dx_in.cols() == full_dx.cols()
                              ? (dx_in - full_dx).cwiseAbs().maxCoeff() : std::numeric_limits<double>::infinity());
  zero_grad(model);
  backward_as(GradMode::params_only);
  worst = std::max(worst, max_abs_diff(grads_of(model), full));
  return worst;
}
/// One probe point of check_flow_layer: updates rep with the worst errors seen so far.
template <class L>
void check_flow_layer_at(L& layer, const Tensor<typename L::backend>& x, const Tensor<typename L::backend>& cond,
                         const CheckOptions& o, Rng& rng, CheckReport& rep) {
  using B = typename L::backend;
  using T = typename B::scalar;
  const long R = x.rows(), D = x.cols();
  // Round trip and analytic log-dets.
  typename L::Context ctx;
  const FlowOut<B> f = layer.forward(x, ctx, cond, logdet::analytic);

  // Log-det vs finite-difference Jacobians, both directions (the inverse's only where the layer has one).
  auto fwd_map = [&](const HostMatrix<T>& xx) {
    typename L::Context c;
    return to_host(layer.forward(from_host<B>(xx), c, cond, logdet::none).y);
  };
  if constexpr (FlowLayer<L>) {
    const FlowOut<B> inv = layer.inverse(f.y, cond, logdet::analytic);
    rep.roundtrip_error = std::max(rep.roundtrip_error, double((to_host(inv.y) - to_host(x)).cwiseAbs().maxCoeff()));
    auto inv_map = [&](const HostMatrix<T>& yy) {
      return to_host(layer.inverse(from_host<B>(yy), cond, logdet::none).y);
    };
    const HostMatrix<T> ld_fd_i = slogdet_rows(detail::fd_jacobian(to_host(f.y), inv_map, o.fd_step), R, D);
    rep.logdet_inverse_error =
        std::max(rep.logdet_inverse_error, double((ld_fd_i - to_host(inv.logdet)).cwiseAbs().maxCoeff()));
  } else {
    rep.inverse_checked = false;
  }
  const HostMatrix<T> jac = detail::fd_jacobian(to_host(x), fwd_map, o.fd_step);
  for (long b = 0; b < R && rep.at_identity; ++b)
    if ((jac.middleRows(b * D, D) - HostMatrix<T>::Identity(D, D)).cwiseAbs().maxCoeff() >
        (std::is_same_v<T, double> ? 1e-7 : 1e-3))
      rep.at_identity = false;
  const HostMatrix<T> ld_fd_f = slogdet_rows(jac, R, D);
  rep.logdet_forward_error =
      std::max(rep.logdet_forward_error, double((ld_fd_f - to_host(f.logdet)).cwiseAbs().maxCoeff()));
  typename L::Context cb;
  const FlowOut<B> bf = layer.forward(x, cb, cond, logdet::brute_force);
  rep.logdet_bruteforce_error =
      std::max(rep.logdet_bruteforce_error, double((to_host(bf.logdet) - to_host(f.logdet)).cwiseAbs().maxCoeff()));

  // Gradients of L = Σ r1∘y + Σ r2∘logdet.
  const HostMatrix<T> r1 = detail::random_host<T>(R, D, rng), r2 = detail::random_host<T>(R, 1, rng);
  auto loss_at = [&](const Tensor<B>& xx) {
    typename L::Context c;
    const FlowOut<B> o2 = layer.forward(xx, c, cond, logdet::analytic);
    return double((to_host(o2.y).cwiseProduct(r1)).sum() + (to_host(o2.logdet).cwiseProduct(r2)).sum());
  };
  zero_grad(layer);
  typename L::Context c0;
  layer.forward(x, c0, cond, logdet::analytic);
  const HostMatrix<T> dx = to_host(layer.backward(c0, from_host<B>(r1), from_host<B>(r2)));
  const auto pg = detail::grads_of(layer);
  // Inference pass and gradient modes against the training pass and the full backward.
  const FlowOut<B> fi = layer.forward(x, cond, logdet::analytic);
  rep.inference_error = std::max({rep.inference_error, max_abs_diff(fi.y, f.y), max_abs_diff(fi.logdet, f.logdet)});
  rep.grad_mode_error = std::max(rep.grad_mode_error, grad_mode_deviation(layer, dx.template cast<double>(), pg,
      [&](GradMode m) { return layer.backward(c0, from_host<B>(r1), from_host<B>(r2), m); }));
  // A context that served another batch first (twice the rows, other values) must give what a fresh one gives.
  // Both runs start from copies of the layer in its present state (a training forward may update buffers, e.g.
  // spectral normalisation's power iteration), and the other batch runs on a third copy: only the context differs.
  {
    const HostMatrix<T> xh = to_host(x);
    const Tensor<B> other = from_host<B>(HostMatrix<T>((HostMatrix<T>(2 * R, D) << xh, xh * T(0.7)).finished()));
    const Tensor<B> other_cond =
        cond.empty() ? cond : from_host<B>((HostMatrix<T>(2 * R, cond.cols()) << to_host(cond), to_host(cond)).finished());
    L fresh = layer, reused = layer, scratch = layer;
    typename L::Context cf, cr;
    scratch.forward(other, cr, other_cond, logdet::analytic);
    const FlowOut<B> ff = fresh.forward(x, cf, cond, logdet::analytic);
    const FlowOut<B> fr = reused.forward(x, cr, cond, logdet::analytic);
    zero_grad(fresh);
    zero_grad(reused);
    const Tensor<B> dxf = fresh.backward(cf, from_host<B>(r1), from_host<B>(r2));
    const Tensor<B> dxr = reused.backward(cr, from_host<B>(r1), from_host<B>(r2));
    rep.context_reuse_error =
        std::max({rep.context_reuse_error, max_abs_diff(fr.y, ff.y), max_abs_diff(fr.logdet, ff.logdet),
                  max_abs_diff(dxr, dxf), max_abs_diff(detail::grads_of(reused), detail::grads_of(fresh))});
  }
  zero_grad(layer);
  layer.backward(c0, from_host<B>(r1), from_host<B>(r2));  // the full gradients again, for the checks below
  rep.input_grad_error = std::max(rep.input_grad_error, detail::input_grad_error(x, dx, loss_at, o.fd_step));
  detail::check_param_grads(layer, pg, [&] { return loss_at(x); }, o, rep, rng);
}

}  // namespace detail

/// Full check of a flow layer at input x (and context cond for conditional layers). A layer without an inverse
/// (declares has_inverse = false) gets every check but the round trip and the inverse log-det; the report says so.
template <ForwardFlowLayer L>
CheckReport check_flow_layer(const L& layer_in, const Tensor<typename L::backend>& x,
                             const Tensor<typename L::backend>& cond = {}, CheckOptions o = {}) {
  using B = typename L::backend;
  CheckReport rep;
  L layer = layer_in;
  Rng rng(o.seed);
  rep.at_identity = true;
  for (const Tensor<B>& xp : detail::probe_points(x, std::max<long>(1, o.probes), o.probe_scale, rng)) {
    detail::check_flow_layer_at(layer, xp, cond, o, rng, rep);
    ++rep.probes;
  }
  return rep;
}

/// Gradient check of an nn module (input and parameters) at x, loss L = Σ r∘y.
template <Module M>
CheckReport check_module(const M& module_in, const Tensor<typename M::backend>& x, CheckOptions o = {}) {
  using B = typename M::backend;
  using T = typename B::scalar;
  CheckReport rep;
  M m = module_in;
  Rng rng(o.seed);
  typename M::Context ctx;
  const Tensor<B> y = m.forward(x, ctx);
  const HostMatrix<T> r = detail::random_host<T>(y.rows(), y.cols(), rng);
  auto loss_at = [&](const Tensor<B>& xx) {
    typename M::Context c;
    return double(to_host(m.forward(xx, c)).cwiseProduct(r).sum());
  };
  zero_grad(m);
  const HostMatrix<T> dx = to_host(m.backward(ctx, from_host<B>(r)));
  const auto pg = detail::grads_of(m);
  rep.inference_error = detail::max_abs_diff(m.forward(x), y);
  rep.grad_mode_error = detail::grad_mode_deviation(m, dx.template cast<double>(), pg,
                                                    [&](GradMode md) { return m.backward(ctx, from_host<B>(r), md); });
  {  // a context that served another batch (twice the rows) first must give what a fresh one gives
    const HostMatrix<T> xh = to_host(x);
    M fresh = m, reused = m, scratch = m;
    typename M::Context cf, cr;
    scratch.forward(from_host<B>(HostMatrix<T>((HostMatrix<T>(2 * x.rows(), x.cols()) << xh, xh * T(0.7)).finished())),
                    cr);
    const Tensor<B> yf = fresh.forward(x, cf), yr = reused.forward(x, cr);
    zero_grad(fresh);
    zero_grad(reused);
    const Tensor<B> dxf = fresh.backward(cf, from_host<B>(r)), dxr = reused.backward(cr, from_host<B>(r));
    rep.context_reuse_error = std::max({detail::max_abs_diff(yr, yf), detail::max_abs_diff(dxr, dxf),
                                        detail::max_abs_diff(detail::grads_of(reused), detail::grads_of(fresh))});
  }
  rep.input_grad_error = detail::input_grad_error(x, dx, loss_at, o.fd_step);
  detail::check_param_grads(m, pg, [&] { return loss_at(x); }, o, rep, rng);
  rep.probes = 1;
  return rep;
}

}  // namespace biflow::testing
