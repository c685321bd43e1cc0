// Flows for variational inference and reverse-KL training (issue 17, items 4 and 6): planar, radial, Householder
// and Sylvester layers through the shared checker, their invertibility constraints, forward-only composition, the
// toy targets (gradients, normalisers), vi::estimate on known-good and known-bad samplers, and ElboTrainer (its
// gradient against finite differences of the batch loss; training moves the ELBO towards log Z).
// Headers covered: flow/planar.hpp, flow/radial.hpp, flow/householder.hpp, flow/sylvester.hpp, flow/flow_layer.hpp
// (forward-only layers), flow/distribution.hpp (forward_sample_and_log_prob), vi/target.hpp, vi/elbo.hpp.
#include "helpers.hpp"

using namespace tests;
#define CPU_BACKENDS biflow::Cpu<double>, biflow::Cpu<float>

namespace {
using D = Cpu<double>;
template <class B>
HostMatrix<double> h(const Tensor<B>& t) {
  return to_host(t).template cast<double>();
}
/// A standard-normal target in d dimensions with its normaliser left out (log Z = d/2·log 2π).
vi::HostTarget std_normal_target(long d) {
  return vi::HostTarget("normal", d, [d](const double* x, double* g) {
    double lp = 0;
    for (long i = 0; i < d; ++i) {
      lp -= 0.5 * x[i] * x[i];
      g[i] = -x[i];
    }
    return lp;
  }, 0.5 * double(d) * std::log(2 * std::numbers::pi));
}
template <class F>
concept CallableInverse = requires(const F& f, const Tensor<typename F::backend>& y) { f.inverse(y); };
}  // namespace

static_assert(CallableInverse<Householder<D>>);
static_assert(ForwardFlowLayer<Planar<D>> && !FlowLayer<Planar<D>>, "planar: forward only");
static_assert(ForwardFlowLayer<Radial<D>> && !FlowLayer<Radial<D>>, "radial: forward only");
static_assert(ForwardFlowLayer<Sylvester<D>> && !FlowLayer<Sylvester<D>>, "Sylvester: forward only");
static_assert(FlowLayer<Householder<D>>, "Householder: invertible");
static_assert(!FlowLayer<Sequential<Householder<D>, Planar<D>>> && ForwardFlowLayer<Sequential<Householder<D>, Planar<D>>>,
              "one forward-only layer makes a composition forward-only");
static_assert(FlowLayer<Sequential<Householder<D>, Permutation<D>>>, "a composition of invertible layers inverts");
static_assert(!FlowLayer<Repeat<dynamic, Planar<D>>> && FlowLayer<Repeat<dynamic, Householder<D>>>);

TEST_CASE_TEMPLATE("planar, radial, Householder and Sylvester layers pass the checker (forward-only ones without the "
                   "inverse checks)", B, CPU_BACKENDS) {
  for (long d : {1L, 2L, 5L}) {
    CAPTURE(d);
    Rng r(10 + std::uint64_t(d));
    const Tensor<B> x = randn<B>(6, d, 3 + std::uint64_t(d));
    check_layer(Planar<B>(d, r), x);
    check_layer(Radial<B>(d, r), x);
    check_layer(Householder<B>(d, d, r), x);
    check_layer(Sylvester<B, sylvester::Triangular>(d, d % 2 == 0, r), x);
    check_layer(Sylvester<B>(d, d, d + 1, r), x);
    if (d > 1) check_layer(Sylvester<B>(d, d - 1, 2, r), x);  // bottleneck M < D
  }
  Rng r(3);
  using Mixed = Sequential<Householder<B>, Planar<B>, Radial<B>, Sylvester<B>>;
  check_layer(Mixed(Householder<B>(3, 2, r), Planar<B>(3, r), Radial<B>(3, r), Sylvester<B>(3, 2, 2, r)),
              randn<B>(6, 3, 4));
  check_layer(Repeat<dynamic, Planar<B>>(4, [&](std::size_t) { return Planar<B>(3, r); }), randn<B>(6, 3, 5));
}

TEST_CASE("planar and radial layers stay invertible (positive Jacobian determinant) for any raw parameters") {
  Rng r(1);
  const Tensor<D> x = randn<D>(200, 2, 2, 3.0);
  for (int trial = 0; trial < 20; ++trial) {
    Planar<D> p(2, r);
    randomize(p, 100 + std::uint64_t(trial), 3.0);
    // Adversarial: u pointing against w, w·u ≪ −1 (without the reparameterisation the map folds over).
    p.u.value = from_host<D>(HostMatrix<double>(-5.0 * h(p.w.value)));
    CHECK(h(p.u_hat().second)(0, 0) >= -1.0 + 0.99e-4);  // w·û ≥ −1 + ε even where softplus underflows
    CHECK(h(p.forward(x).logdet).allFinite());
    const auto jac = jacobian_by_backward(p, x, {});
    for (long b = 0; b < x.rows(); ++b) CHECK(jac.middleRows(b * 2, 2).determinant() > 0);
    Radial<D> q(2, r);
    randomize(q, 200 + std::uint64_t(trial), 3.0);
    q.beta_raw.value = from_host<D>(HostMatrix<double>(HostMatrix<double>::Constant(1, 1, -30.0)));  // β → −α
    const auto [a, bt] = q.alpha_beta();
    CHECK(h(bt)(0, 0) > -h(a)(0, 0));
    const auto jq = jacobian_by_backward(q, x, {});
    for (long b = 0; b < x.rows(); ++b) CHECK(jq.middleRows(b * 2, 2).determinant() > 0);
    const HostMatrix<double> ld = h(q.forward(x).logdet);
    CHECK(ld.allFinite());
  }
}

TEST_CASE("Sylvester: R and R̃ are upper triangular with diagonal products in (−1, 1); the log-det stays finite for "
          "large raw diagonals; Householder maps are orthogonal") {
  Rng r(4);
  Sylvester<D> s(4, 3, 4, r);
  randomize(s, 9, 5.0);
  const auto tr = s.triangles();
  const HostMatrix<double> R = h(tr.r), Rt = h(tr.rt), dg = h(tr.diag);
  for (long i = 0; i < 3; ++i)
    for (long j = 0; j < i; ++j) CHECK(R(i, j) == 0.0);
  for (long i = 0; i < 3; ++i) {
    CHECK(std::abs(dg(0, i)) < 1.0);
    CHECK(dg(0, i) == doctest::Approx(R(i, i) * Rt(i, i)));
  }
  const HostMatrix<double> Q = h(s.q_matrix(nullptr));
  CHECK((Q.transpose() * Q - HostMatrix<double>::Identity(3, 3)).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(h(s.forward(randn<D>(50, 4, 1, 10.0)).logdet).allFinite());
  Householder<D> hh(5, 5, r);
  const Tensor<D> x = randn<D>(20, 5, 2);
  const HostMatrix<double> y = h(hh.forward(x).y), xs = h(x);
  for (long b = 0; b < 20; ++b) CHECK(y.row(b).norm() == doctest::Approx(xs.row(b).norm()).epsilon(1e-12));
}

TEST_CASE("a forward-only flow still gives densities and forward samples; its inverse is absent at compile time") {
  Rng r(5);
  Repeat<dynamic, Planar<D>> flow(3, [&](std::size_t) { return Planar<D>(2, r); });
  const Tensor<D> x = randn<D>(10, 2, 6);
  const HostMatrix<double> lp = h(log_prob(flow, x));
  CHECK(lp.allFinite());
  // forward_sample_and_log_prob: log q(F(ε)) = log N(ε) − log|det ∂F/∂ε|; check against the Jacobian.
  Rng s(7);
  const ForwardSample<D> fs = forward_sample_and_log_prob(flow, 8, s);
  const HostMatrix<double> ld = slogdet_rows(jacobian_by_backward(flow, fs.eps, {}), 8, 2);
  const HostMatrix<double> ln = h(StandardNormal::log_prob(fs.eps));
  CHECK((h(fs.log_q) - (ln - ld)).cwiseAbs().maxCoeff() < 1e-10);
  CHECK((h(fs.x) - h(flow.forward(fs.eps).y)).cwiseAbs().maxCoeff() == 0.0);
  static_assert(!CallableInverse<decltype(flow)>, "no inverse for a composition of planar layers");
}

TEST_CASE("toy targets: gradients match finite differences; known normalisers match quadrature") {
  Rng r(8);
  for (const std::string name : {"funnel", "banana", "u1", "u2", "u3", "u4"}) {
    CAPTURE(name);
    const vi::HostTarget t = vi::targets::by_name(name);
    HostMatrix<double> x(40, 2);
    for (long i = 0; i < x.size(); ++i) x.data()[i] = 2.5 * r.normal();
    x(0, 0) = 4.5;  // inside the energies' wall
    x(1, 0) = -4.7;
    HostMatrix<double> g;
    t.log_prob(x, &g);
    for (long i = 0; i < x.rows(); ++i)
      for (long j = 0; j < 2; ++j) {
        HostMatrix<double> xp = x, xm = x;
        xp(i, j) += 1e-6;
        xm(i, j) -= 1e-6;
        const double fd = (t.log_prob(xp)(i, 0) - t.log_prob(xm)(i, 0)) / 2e-6;
        CHECK(std::abs(fd - g(i, j)) <= 1e-5 * std::max(1.0, std::abs(fd)));
      }
  }
  const vi::HostTarget b = vi::targets::banana();
  CHECK(vi::quadrature_log_z(b, {-9, 9, -8, 30}, 1200) == doctest::Approx(b.log_z()).epsilon(1e-4));
  const vi::HostTarget n = std_normal_target(2);
  CHECK(vi::quadrature_log_z(n, {-9, 9, -9, 9}, 600) == doctest::Approx(n.log_z()).epsilon(1e-6));
  CHECK(message<shape_error>([&] { b.log_prob(HostMatrix<double>(3, 3)); }).find("expected 2 features") != std::string::npos);
  CHECK(message<usage_error>([] { vi::targets::by_name("u7"); }).find("u1..u4") != std::string::npos);
}

TEST_CASE("vi::estimate: exact on a sampler equal to the target, and it ranks known-bad samplers as bad") {
  Rng r(9);
  const vi::HostTarget t = std_normal_target(2);
  const DiagonalScaling<D> ident(2);  // the identity map: q = N(0, I) = p̃/Z exactly
  Rng s(1);
  const vi::Estimate good = vi::estimate(ident, t, 5000, s, 1024);
  CHECK(good.samples == 5000);
  CHECK(good.elbo == doctest::Approx(t.log_z()).epsilon(1e-12));
  CHECK(good.log_z == doctest::Approx(t.log_z()).epsilon(1e-12));
  CHECK(good.ess_fraction == doctest::Approx(1.0).epsilon(1e-12));
  // Known-bad: a sampler 3× too wide and one shifted by 2 — ELBO below log Z by about KL, ESS well below 1.
  DiagonalScaling<D> wide(2);
  wide.log_scale.value = from_host<D>(HostMatrix<double>(HostMatrix<double>::Constant(1, 2, std::log(3.0))));
  const vi::Estimate w = vi::estimate(wide, t, 20000, s);
  const double kl_wide = 2 * (0.5 * (9.0 - 1.0) - std::log(3.0));  // KL(N(0, 9I) ‖ N(0, I)) in 2-D
  CHECK(t.log_z() - w.elbo == doctest::Approx(kl_wide).epsilon(0.03));
  CHECK(w.ess_fraction < 0.5);
  // q wider than p: the importance weights have finite variance, so the weighted estimate recovers log Z where the
  // ELBO is ~4.8 nats short.
  CHECK(std::abs(w.log_z - t.log_z()) < 0.1);
}

TEST_CASE("ElboTrainer: its gradient is the gradient of the batch's negative ELBO, and training approaches log Z") {
  const vi::HostTarget t = vi::targets::banana();
  Rng r(11);
  using F = Repeat<dynamic, Planar<D>>;
  F flow(4, [&](std::size_t) { return Planar<D>(2, r); });
  TrainOptions o;
  o.verbose = false;
  vi::ElboTrainer<F, vi::HostTarget> tr(flow, t, o, 64);
  // Finite differences of the loss of one fixed batch (same Rng state) against the accumulated gradients.
  Rng fixed(3);
  Rng a = fixed;
  const double loss = tr.negative_elbo_backward(a);
  CHECK(std::isfinite(loss));
  std::vector<HostMatrix<double>> grads;  // read before any finite-difference call overwrites them
  flow.visit_parameters([&](const std::string&, auto& p) { grads.push_back(h(p.grad)); }, "");
  long checked = 0;
  std::size_t k = 0;
  flow.visit_parameters([&](const std::string& name, auto& p) {
    CAPTURE(name);
    HostMatrix<double> v = h(p.value);
    const HostMatrix<double> g = grads[k++];
    for (long i = 0; i < v.size(); ++i) {
      const double keep = v.data()[i];
      v.data()[i] = keep + 1e-6;
      p.value = from_host<D>(v);
      Rng b1 = fixed;
      const double lp = tr.negative_elbo_backward(b1);
      v.data()[i] = keep - 1e-6;
      p.value = from_host<D>(v);
      Rng b2 = fixed;
      const double lm = tr.negative_elbo_backward(b2);
      v.data()[i] = keep;
      p.value = from_host<D>(v);
      CHECK(std::abs((lp - lm) / 2e-6 - g.data()[i]) <= 1e-6 * std::max(1.0, std::abs(g.data()[i])));
      ++checked;
    }
  }, "");
  CHECK(checked == 4 * 5);
  // Training: 8 planar layers, 1500 steps of 128 samples.
  F f8(8, [&](std::size_t) { return Planar<D>(2, r); });
  o.lr = 3e-3;
  o.total_steps = 1500;
  o.clip = 10;
  vi::ElboTrainer<F, vi::HostTarget> t8(f8, t, o, 128);
  Rng e(4);
  const vi::Estimate before = vi::estimate(f8, t, 10000, e);
  Rng s(5);
  for (long i = 0; i < 1500; ++i) t8.step(s);
  const vi::Estimate after = vi::estimate(f8, t, 10000, e);
  INFO("ELBO before " << before.elbo << ", after " << after.elbo << " ± " << after.elbo_stderr << ", log Z "
                      << t.log_z() << ", ESS " << after.ess_fraction);
  CHECK(after.elbo > before.elbo + 0.5);
  CHECK(after.elbo < t.log_z() + 3 * after.elbo_stderr);  // ELBO ≤ log Z
  CHECK(after.elbo > t.log_z() - 0.25);
  CHECK(after.ess_fraction > before.ess_fraction);
  CHECK(t8.skipped_steps() == 0);
  CHECK(message<shape_error>([&] { vi::ElboTrainer<F, vi::HostTarget> bad(f8, vi::targets::funnel(3), o); })
            .find("the target has 3 features, the flow 2") != std::string::npos);
}
