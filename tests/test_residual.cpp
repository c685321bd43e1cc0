// Residual flows (flow/residual.hpp) and the stochastic log-det policies (flow/logdet.hpp): the layer through the
// checker with the exact log-det, the fixed-point inverse (convergence, and the report or error when it does not
// converge), the spectral normalisation and its saved power-iteration state, and the estimators: Russian roulette
// unbiased for the log-det and its Neumann-series gradient (mean within 4 standard errors of the exact value over
// many draws), Hutchinson's truncation bias, variance falling with the number of probes K.
#include <filesystem>

#include "helpers.hpp"

using namespace tests;

namespace {
using D = Cpu<double>;
template <class B>
HostMatrix<double> h(const Tensor<B>& t) {
  return to_host(t).template cast<double>();
}
residual::Options small(double c = 0.9) {
  residual::Options o;
  o.hidden = {8, 8};
  o.lipschitz = c;
  return o;
}
/// Per-row mean and standard error of M draws of f() (each rows × 1).
template <class F>
std::pair<HostMatrix<double>, HostMatrix<double>> mean_stderr(long rows, int M, F&& f) {
  HostMatrix<double> s = HostMatrix<double>::Zero(rows, 1), s2 = s;
  for (int i = 0; i < M; ++i) {
    const HostMatrix<double> v = f();
    s += v;
    s2 += v.cwiseProduct(v);
  }
  const HostMatrix<double> mean = s / M;
  const HostMatrix<double> var = (s2 / M - mean.cwiseProduct(mean)) * (double(M) / (M - 1));
  return {mean, (var / M).cwiseSqrt()};
}
/// How many entries of a Monte-Carlo mean lie more than 4 standard errors from the exact value.
long outside_4se(const HostMatrix<double>& mean, const HostMatrix<double>& se, const HostMatrix<double>& exact) {
  long n = 0;
  for (long i = 0; i < exact.rows(); ++i)
    if (std::abs(mean(i, 0) - exact(i, 0)) > 4 * se(i, 0) + 1e-12) ++n;
  return n;
}
/// All parameter gradients of a layer, flattened (rows × 1).
template <class L>
HostMatrix<double> flat_grads(L& l) {
  std::vector<double> g;
  l.visit_parameters([&](const std::string&, auto& p) {
    const HostMatrix<double> m = h(p.grad);
    g.insert(g.end(), m.data(), m.data() + m.size());
  }, "");
  return Eigen::Map<HostMatrix<double>>(g.data(), long(g.size()), 1);
}
}  // namespace

static_assert(LogDetPolicy<logdet::Hutchinson<4>> && LogDetPolicy<logdet::RussianRoulette<>> && !LogDetPolicy<bool>);
static_assert(is_stochastic_policy<logdet::Hutchinson<>> && !is_unbiased_policy<logdet::Hutchinson<>>);
static_assert(is_stochastic_policy<logdet::RussianRoulette<>> && is_unbiased_policy<logdet::RussianRoulette<>>);
static_assert(!is_stochastic_policy<logdet::Analytic> && is_unbiased_policy<logdet::Analytic>);
static_assert(FlowLayer<Residual<D>> && TakesInverseOption<Residual<D>, residual::FixedPoint>);

TEST_CASE_TEMPLATE("residual flow passes the checker with the exact log-det (round trip by fixed point, log-det both "
                   "ways, gradients through the Neumann/LU trick)", B, biflow::Cpu<double>, biflow::Cpu<float>) {
  for (long d : {1L, 2L, 4L}) {
    CAPTURE(d);
    Rng r(20 + std::uint64_t(d));
    check_layer(Residual<B>(d, r, small()), randn<B>(6, d, 3));
  }
  Rng r(2);
  using Two = Sequential<Residual<B>, Permutation<B>, Residual<B>>;
  check_layer(Two(Residual<B>(3, r, small()), Permutation<B>::reverse(3), Residual<B>(3, r, small(0.7))), randn<B>(5, 3, 4));
}

TEST_CASE("residual flow: spectral normalisation bounds Lip(g) below 1; the fixed-point inverse reports or throws when "
          "it does not converge") {
  Rng r(3);
  Residual<D> l(2, r, small(0.95));
  randomize(l, 7, 3.0);  // large raw weights: the normalisation must do the work
  for (int i = 0; i < 100; ++i) {  // training backward passes track the new weights
    Residual<D>::Context c;
    l.forward(randn<D>(4, 2, 1), c);
    l.backward(c, Tensor<D>(4, 2), Tensor<D>(4, 1));
  }
  CHECK(l.lipschitz_bound() < 0.95 * 0.95 * 0.95 + 1e-6);
  // Largest singular value of each normalised map ≤ c (to the power iteration's accuracy).
  const Tensor<D> x = randn<D>(50, 2, 2, 2.0);
  const auto jac = jacobian_by_backward(l, x, {});
  for (long b = 0; b < 50; ++b) {
    const HostMatrix<double> J = jac.middleRows(b * 2, 2) - HostMatrix<double>::Identity(2, 2);  // J_g
    CHECK(Eigen::JacobiSVD<HostMatrix<double>>(J).singularValues()(0) < 0.95 * 0.95 * 0.95 + 1e-3);
  }
  const Tensor<D> y = l.forward(x).y;
  residual::FixedPointReport rep;
  const FlowOut<D> inv = l.inverse(y, {}, residual::FixedPoint{1e-12, 500, &rep});
  CHECK(rep.converged);
  CHECK(rep.iterations > 3);
  CHECK((h(inv.y) - h(x)).cwiseAbs().maxCoeff() < 1e-10);
  residual::FixedPointReport short_rep;
  l.inverse(y, {}, residual::FixedPoint{1e-12, 2, &short_rep});
  CHECK_FALSE(short_rep.converged);
  CHECK(short_rep.iterations == 2);
  const std::string msg = message<numeric_error>([&] { l.inverse(y, {}, residual::FixedPoint{1e-12, 2}); });
  CHECK(msg.find("did not converge in 2 iterations") != std::string::npos);
}

TEST_CASE("residual flow: the power-iteration vectors are buffers, saved and restored with the weights") {
  Rng r(4);
  Residual<D> a(3, r, small());
  randomize(a, 9, 1.0);
  for (int i = 0; i < 5; ++i) {
    Residual<D>::Context c;
    a.forward(randn<D>(4, 3, 1), c);
    a.backward(c, Tensor<D>(4, 3), Tensor<D>(4, 1));
  }
  const std::string path = temp_path("residual.safetensors");
  io::save_safetensors(path, a);
  Rng r2(99);
  Residual<D> b(3, r2, small());
  io::load_safetensors(path, b);
  const Tensor<D> x = randn<D>(7, 3, 5);
  CHECK((h(a.forward(x).y) - h(b.forward(x).y)).cwiseAbs().maxCoeff() == 0.0);
  CHECK(buffer_count(b) == 6);
  std::filesystem::remove(path);
}

TEST_CASE("stochastic log-det policies: Russian roulette is unbiased for the log-det and its gradient; Hutchinson's "
          "truncation is biased; the variance falls with the number of probes") {
  Rng r(5);
  residual::Options o = small(0.97);
  o.hidden = {6};
  Residual<D> l(3, r, o);
  randomize(l, 11, 1.0);  // every map's σ̂ > c: all of them act at the bound
  l.refresh_spectral_norm();
  const Tensor<D> x = randn<D>(5, 3, 6);
  const HostMatrix<double> exact = h(l.forward(x).logdet);
  const HostMatrix<double> brute = h(l.forward(x, {}, logdet::brute_force).logdet);
  CHECK((exact - brute).cwiseAbs().maxCoeff() < 1e-10);
  Rng pr(7);
  const int M = 3000;
  // Roulette with a short guaranteed part: unbiased, so the mean lands within 4 standard errors of the exact value.
  const auto [rr_mean, rr_se] = mean_stderr(5, M, [&] { return h(l.forward(x, {}, logdet::russian_roulette(pr, 1, 0.6)).logdet); });
  INFO("exact " << exact.transpose() << "\nroulette " << rr_mean.transpose() << " ± " << rr_se.transpose());
  CHECK(((rr_mean - exact).cwiseAbs().array() <= 4 * rr_se.array()).all());
  CHECK(rr_se.maxCoeff() < 0.05);  // the check has power
  // Hutchinson with one term estimates tr(J_g) (unbiased for it), which misses −tr(J²)/2 + … of the log-det.
  const auto [h1_mean, h1_se] = mean_stderr(5, M, [&] { return h(l.forward(x, {}, logdet::hutchinson(pr, 1)).logdet); });
  const auto jac = jacobian_by_backward(l, x, {});
  HostMatrix<double> trace(5, 1);
  for (long b = 0; b < 5; ++b) trace(b, 0) = jac.middleRows(b * 3, 3).trace() - 3.0;
  INFO("tr J " << trace.transpose() << "\none-term Hutchinson " << h1_mean.transpose() << " ± " << h1_se.transpose());
  CHECK(((h1_mean - trace).cwiseAbs().array() <= 4 * h1_se.array()).all());
  CHECK((trace - exact).cwiseAbs().maxCoeff() > 0.05);  // the truncation bias (exact arithmetic: no noise)
  // With 20 terms the truncation error (Lip(g)^21/21) is below the noise: unbiased to the test's resolution.
  const auto [h20_mean, h20_se] = mean_stderr(5, M, [&] { return h(l.forward(x, {}, logdet::hutchinson(pr, 20)).logdet); });
  CHECK(((h20_mean - exact).cwiseAbs().array() <= 4 * h20_se.array()).all());
  // K = 4 probes: the standard error about halves (variance / 4; allowed 0.35–0.7 of K = 1's).
  const auto [h4_mean, h4_se] = mean_stderr(5, M, [&] { return h(l.forward(x, {}, logdet::hutchinson<4>(pr, 20)).logdet); });
  for (long i = 0; i < 5; ++i) {
    CHECK(h4_se(i, 0) < 0.7 * h20_se(i, 0));
    CHECK(h4_se(i, 0) > 0.35 * h20_se(i, 0));
  }
  // The Neumann-series gradient under roulette: its mean is the exact log-det's gradient (dlogdet = 1, dy = 0).
  const Tensor<D> dy(5, 3), dl = constant<D>(5, 1, 1.0);
  Residual<D> le = l;
  zero_grad(le);
  Residual<D>::Context ce;
  le.forward(x, ce);
  le.backward(ce, dy, dl, GradMode::params_only);
  const HostMatrix<double> g_exact = flat_grads(le);
  const auto [g_mean, g_se] = mean_stderr(g_exact.rows(), M, [&] {
    Residual<D> ls = l;
    zero_grad(ls);
    Residual<D>::Context cs;
    ls.forward(x, cs, {}, logdet::russian_roulette(pr, 1, 0.6));
    ls.backward(cs, dy, dl, GradMode::params_only);
    return flat_grads(ls);
  });
  const long outside = outside_4se(g_mean, g_se, g_exact);
  INFO(outside << " of " << g_exact.rows() << " gradient entries outside 4 standard errors");
  CHECK(outside <= g_exact.rows() / 100);  // ~0.006% expected by chance; a biased gradient moves most of them
  CHECK(message<usage_error>([&] { l.forward(x, {}, logdet::Hutchinson<1>{}); }).find("needs an Rng") != std::string::npos);
}

TEST_CASE("a stochastic policy on layers with a closed form gives their exact log-det; compositions hand it on") {
  Rng r(8), pr(1);
  auto c = make_coupling<D>(masks::half(3, 0), {8}, r);
  randomize(c, 3);
  Residual<D> res(3, r, small());
  using S = Sequential<decltype(c), Residual<D>>;
  const S s(c, res);
  const Tensor<D> x = randn<D>(4, 3, 2);
  CHECK((h(c.forward(x, {}, logdet::hutchinson(pr)).logdet) - h(c.forward(x).logdet)).cwiseAbs().maxCoeff() == 0.0);
  // Through the composition the residual layer gets the estimator: draws differ, their mean is the exact value.
  const HostMatrix<double> a = h(s.forward(x, {}, logdet::hutchinson(pr, 10)).logdet);
  const HostMatrix<double> b = h(s.forward(x, {}, logdet::hutchinson(pr, 10)).logdet);
  CHECK((a - b).cwiseAbs().maxCoeff() > 0);
  const auto [m, se] = mean_stderr(4, 2000, [&] { return h(s.forward(x, {}, logdet::hutchinson(pr, 20)).logdet); });
  CHECK(((m - h(s.forward(x).logdet)).cwiseAbs().array() <= 4 * se.array()).all());
}

TEST_CASE("maximum likelihood with a stochastic log-det: under Russian roulette the NLL loss and its gradients are "
          "unbiased, and MleTrainer trains with the policy it is given") {
  Rng r(12);
  residual::Options o = small(0.95);
  o.hidden = {6};
  Residual<D> l(2, r, o);
  randomize(l, 4, 1.0);
  l.refresh_spectral_norm();
  const Tensor<D> x = randn<D>(8, 2, 9);
  Residual<D> le = l;
  zero_grad(le);
  const double exact = nll_forward_backward(le, x);  // analytic: the exact NLL and its gradient
  CHECK(std::abs(exact - nll(l, x)) < 1e-12);
  const HostMatrix<double> g_exact = flat_grads(le);
  Rng pr(3);
  const int M = 2000;
  HostMatrix<double> losses(M, 1);
  int i = 0;
  const auto [g_mean, g_se] = mean_stderr(g_exact.rows(), M, [&] {
    Residual<D> ls = l;
    zero_grad(ls);
    losses(i++, 0) = nll_forward_backward(ls, x, {}, logdet::russian_roulette(pr, 1, 0.6));
    return flat_grads(ls);
  });
  const double mean = losses.mean();
  const double se = std::sqrt((losses.array() - mean).square().sum() / (M - 1) / M);
  INFO("exact NLL " << exact << ", roulette " << mean << " ± " << se);
  CHECK(se > 1e-4);  // the loss is an estimate (a policy silently replaced by the exact one would give se = 0)
  CHECK(std::abs(mean - exact) <= 4 * se);
  const long outside = outside_4se(g_mean, g_se, g_exact);
  INFO(outside << " of " << g_exact.rows() << " gradient entries outside 4 standard errors");
  CHECK(outside <= g_exact.rows() / 100);

  // The trainer hands its policy to every step: the first step's loss is the estimate, not the exact NLL, and the
  // roulette-trained and exactly-trained copies part ways.
  TrainOptions to;
  to.total_steps = 40;
  to.warmup = 1;
  Residual<D> la = l, lr = l;
  MleTrainer ta(la, to);
  Rng tr(21);
  MleTrainer trr(lr, to, logdet::russian_roulette(tr, 1, 0.6));
  static_assert(std::is_same_v<decltype(ta), MleTrainer<Residual<D>, logdet::Analytic>>);
  static_assert(std::is_same_v<decltype(trr), MleTrainer<Residual<D>, logdet::RussianRoulette<1>>>);
  const double la0 = ta.step(x).loss, lr0 = trr.step(x).loss;
  CHECK(std::abs(la0 - exact) < 1e-12);
  CHECK(std::abs(lr0 - exact) > 1e-9);
  for (int s = 0; s < 30; ++s) {
    ta.step(x);
    trr.step(x);
  }
  CHECK(nll(lr, x) < exact);  // roulette training lowers the exact NLL
  CHECK(std::abs(nll(lr, x) - nll(la, x)) > 1e-9);
}
