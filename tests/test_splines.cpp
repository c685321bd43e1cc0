// Neural spline flows (flow/spline.hpp): the element-wise rational-quadratic spline against finite differences and
// its own inverse, its edge cases (tails, knots, collapsed bins), and the spline coupling and autoregressive layers
// through the shared checker.
#include "helpers.hpp"

using namespace tests;
#define CPU_BACKENDS biflow::Cpu<double>, biflow::Cpu<float>

namespace {
/// Random raw parameters, scaled (a large scale makes some bins collapse to the minimum width / height).
template <class B>
Tensor<B> raw_params(long rows, long d, const SplineShape& sh, std::uint64_t seed, double scale = 1.0) {
  return randn<B>(rows, d * sh.params(), seed, scale);
}
template <class B>
HostMatrix<double> h(const Tensor<B>& t) {
  return to_host(t).template cast<double>();
}
}  // namespace

TEST_CASE_TEMPLATE("rational-quadratic spline: inverse undoes forward, log-dets are opposite and match the "
                   "numerical derivative, and the map is increasing", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  const bool dbl = std::is_same_v<T, double>;
  for (double scale : {0.5, 3.0}) {
    CAPTURE(scale);
    SplineShape sh;
    sh.bins = 8;
    sh.bound = 3.0;
    const long n = 400;
    Rng r(7);
    HostMatrix<T> xs(n, 1);
    for (long i = 0; i < n; ++i) xs(i, 0) = T(-3.3 + 6.6 * double(i) / double(n - 1));  // beyond both tails
    const Tensor<B> x = from_host<B>(xs);
    HostMatrix<T> one = to_host(raw_params<B>(1, 1, sh, 11, scale));
    HostMatrix<T> ps(n, sh.params());
    for (long i = 0; i < n; ++i) ps.row(i) = one.row(0);  // the same spline for every row
    const Tensor<B> p = from_host<B>(ps);
    const FlowOut<B> f = rq_spline(x, p, sh, false, true);
    const FlowOut<B> g = rq_spline(f.y, p, sh, true, true);
    const HostMatrix<double> y = h(f.y), xb = h(g.y), lf = h(f.logdet), li = h(g.logdet), xd = xs.template cast<double>();
    // Float: steep bins (scale 3) amplify rounding in the inverse's quadratic by 1/slope.
    CHECK((xb - xd).cwiseAbs().maxCoeff() < (dbl ? 1e-10 : (scale > 1 ? 5e-3 : 2e-4)));
    CHECK((lf + li).cwiseAbs().maxCoeff() < (dbl ? 1e-9 : (scale > 1 ? 2e-2 : 2e-3)));
    for (long i = 1; i < n; ++i) CHECK(y(i, 0) > y(i - 1, 0));  // strictly increasing
    for (long i = 0; i < n; ++i) {
      if (std::abs(xd(i, 0)) >= 3.0) {  // linear tails: the identity
        CHECK(y(i, 0) == xd(i, 0));
        CHECK(lf(i, 0) == 0.0);
      }
    }
    if (dbl) {  // log-det against a central difference of the map itself
      const double e = 1e-6;
      HostMatrix<T> xp = xs, xm = xs;
      xp.array() += T(e);
      xm.array() -= T(e);
      const HostMatrix<double> yp = h(rq_spline(from_host<B>(xp), p, sh, false, false).y);
      const HostMatrix<double> ym = h(rq_spline(from_host<B>(xm), p, sh, false, false).y);
      double worst = 0;
      for (long i = 0; i < n; ++i) {
        if (std::abs(std::abs(xd(i, 0)) - 3.0) < 1e-3) continue;  // the kink at the bound
        worst = std::max(worst, std::abs(std::log((yp(i, 0) - ym(i, 0)) / (2 * e)) - lf(i, 0)));
      }
      CHECK(worst < (scale > 1 ? 1e-5 : 1e-6));  // steep bins: the difference quotient's truncation error
    }
  }
}

TEST_CASE_TEMPLATE("rational-quadratic spline: knots map to knots, the ends to the ends, and collapsed bins stay "
                   "invertible", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  SplineShape sh;
  sh.bins = 6;
  sh.bound = 2.0;
  // Raw widths/heights with a few bins far below the others: they collapse to the minimum width / height.
  HostMatrix<T> raw(1, sh.params());
  raw.setZero();
  raw(0, 1) = T(-40);  // width of bin 1 → min_width
  raw(0, sh.bins + 3) = T(-40);  // height of bin 3 → min_height
  raw(0, 2 * sh.bins) = T(-40);  // first interior derivative → min_derivative
  const Tensor<B> p = from_host<B>(raw);
  spline_detail::Knots<T> k;
  spline_detail::knots(raw.data(), sh.bins, T(sh.bound), T(sh.min_width), T(sh.min_height), T(sh.min_derivative), k);
  CHECK(k.x[0] == T(-2));
  CHECK(k.x[sh.bins] == T(2));
  CHECK(double(k.x[2] - k.x[1]) == doctest::Approx(2 * sh.bound * sh.min_width).epsilon(1e-3));
  CHECK(double(k.y[4] - k.y[3]) == doctest::Approx(2 * sh.bound * sh.min_height).epsilon(1e-3));
  CHECK(double(k.d[1]) == doctest::Approx(sh.min_derivative).epsilon(1e-3));
  // Interior knots map to the matching knots of y.
  for (long j = 1; j < sh.bins; ++j) {
    HostMatrix<T> xk(1, 1);
    xk(0, 0) = k.x[j];
    const HostMatrix<double> y = h(rq_spline(from_host<B>(xk), p, sh, false, false).y);
    CHECK(y(0, 0) == doctest::Approx(double(k.y[j])).epsilon(1e-5));
  }
  // Points inside the collapsed bins and around them survive the round trip.
  HostMatrix<T> xs(5, 1);
  xs << k.x[1], T(0.5) * (k.x[1] + k.x[2]), k.x[2], T(0.5) * (k.x[3] + k.x[4]), T(1.9999);
  const Tensor<B> p5 = from_host<B>(HostMatrix<T>(raw.replicate(5, 1)));
  const FlowOut<B> f = rq_spline(from_host<B>(xs), p5, sh, false, true);
  const FlowOut<B> g = rq_spline(f.y, p5, sh, true, true);
  CHECK((h(g.y) - xs.template cast<double>()).cwiseAbs().maxCoeff() < (std::is_same_v<T, double> ? 1e-9 : 1e-3));
  CHECK(h(f.logdet).allFinite());
  CHECK(h(g.logdet).allFinite());
  // Bad shapes are refused with a sentence.
  SplineShape bad;
  bad.bins = 0;
  CHECK_THROWS_WITH_AS(bad.validate("test"), doctest::Contains("bins must be in [1, 64]"), usage_error);
  bad.bins = 10;
  bad.min_width = 0.2;
  CHECK_THROWS_WITH_AS(bad.validate("test"), doctest::Contains("min_width and min_height"), usage_error);
}

TEST_CASE("rational-quadratic spline: the gradients of y and of the log-det with respect to x and to every raw "
          "parameter match finite differences (double)") {
  using B = Cpu<double>;
  SplineShape sh;
  sh.bins = 5;
  sh.bound = 2.5;
  const long n = 7, P = sh.params();
  const Tensor<B> x = randn<B>(n, 1, 21, 1.2), p = raw_params<B>(n, 1, sh, 22, 1.5);
  const Tensor<B> gy = randn<B>(n, 1, 23), gl = randn<B>(n, 1, 24);
  Tensor<B> dx(n, 1), dp(n, P);
  packed_map_grad(fn::RqSplineGrad{sh.bins, sh.bound, sh.min_width, sh.min_height, sh.min_derivative}, P, x, p, gy, gl,
                  dx, dp);
  auto loss = [&](const Tensor<B>& xx, const Tensor<B>& pp) {
    const FlowOut<B> o = rq_spline(xx, pp, sh, false, true);
    return (h(o.y).array() * h(gy).array()).sum() + (h(o.logdet).array() * h(gl).array()).sum();
  };
  const double e = 1e-6;
  for (long i = 0; i < n; ++i) {
    HostMatrix<double> xp = h(x), xm = h(x);
    xp(i, 0) += e;
    xm(i, 0) -= e;
    const double fd = (loss(from_host<B>(xp), p) - loss(from_host<B>(xm), p)) / (2 * e);
    CHECK(h(dx)(i, 0) == doctest::Approx(fd).epsilon(1e-6));
    for (long j = 0; j < P; ++j) {
      HostMatrix<double> pp = h(p), pm = h(p);
      pp(i, j) += e;
      pm(i, j) -= e;
      const double fdp = (loss(x, from_host<B>(pp)) - loss(x, from_host<B>(pm))) / (2 * e);
      CAPTURE(i);
      CAPTURE(j);
      CHECK(h(dp)(i, j) == doctest::Approx(fdp).epsilon(1e-5).scale(1.0));
    }
  }
}

TEST_CASE_TEMPLATE("spline coupling passes the checks (unconditional and conditional) and leaves the kept "
                   "dimensions unchanged", B, CPU_BACKENDS) {
  Rng rng(31);
  SplineShape sh;
  sh.bins = 6;
  sh.bound = 3.0;
  // Uneven but not collapsed bins: the checker's finite differences (step 1e-5 in double) cannot follow the
  // curvature of near-collapsed ones; those are covered by the element-wise tests above. Float: milder splines
  // (its check is the round trip and the log-dets at float precision).
  const bool dbl = std::is_same_v<typename B::scalar, double>;
  const double scale = dbl ? 0.25 : 0.15, step = 0;
  for (const auto& mask : {masks::half(4, 0), masks::alternating(5, 1)}) {
    const long d = long(mask.size());
    auto layer = make_spline_coupling<B, act::Tanh>(mask, {12}, rng, sh);
    randomize(layer, 32, scale);
    const auto x = randn<B>(6, d, 33, 1.3);
    check_layer(layer, x, {}, step);
    const auto xh = to_host(x), yh = to_host(layer.forward(x).y);
    for (long j = 0; j < d; ++j)
      if (mask[std::size_t(j)]) CHECK((yh.col(j) - xh.col(j)).cwiseAbs().maxCoeff() == 0.0);
      else CHECK((yh.col(j) - xh.col(j)).cwiseAbs().maxCoeff() > 0.0);
  }
  auto cond = make_spline_coupling<B>(masks::half(4, 1), {10}, rng, sh, 3);
  randomize(cond, 34, scale);
  check_layer(cond, randn<B>(5, 4, 35), randn<B>(5, 3, 36), step);
}

TEST_CASE_TEMPLATE("spline autoregressive layer passes the checks (unconditional and conditional); output i depends "
                   "only on inputs up to i", B, CPU_BACKENDS) {
  Rng rng(41);
  SplineShape sh;
  sh.bins = 5;
  sh.bound = 3.0;
  const double scale = std::is_same_v<typename B::scalar, double> ? 0.25 : 0.15;
  SplineAutoregressive<B, act::Tanh> a(4, {12, 12}, rng, sh);
  SplineAutoregressive<B> c(3, {10}, rng, sh, 2);
  randomize(a, 42, scale);
  randomize(c, 43, scale);
  check_layer(a, randn<B>(5, 4, 44, 1.3));
  check_layer(c, randn<B>(5, 3, 45, 1.3), randn<B>(5, 2, 46));
  const auto x = randn<B>(3, 4, 47);
  const auto y0 = to_host(a.forward(x).y);
  for (long i = 0; i < 4; ++i) {
    auto xh = to_host(x);
    xh.col(i).array() += 0.5;
    const auto y1 = to_host(a.forward(from_host<B>(xh)).y);
    for (long j = 0; j < 4; ++j) {
      const double diff = (y1.col(j) - y0.col(j)).cwiseAbs().maxCoeff();
      if (j < i) CHECK(diff == 0.0);
      else CHECK(diff > 0.0);
    }
  }
  // A zero conditioner is the identity (all-zero raw parameters: uniform bins, unit derivatives).
  SplineAutoregressive<B> fresh(4, {8}, rng, sh);
  const auto xi = randn<B>(6, 4, 48);
  CHECK((to_host(fresh.forward(xi).y) - to_host(xi)).cwiseAbs().maxCoeff() < 1e-5);
}
