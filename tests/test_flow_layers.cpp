// Every flow layer (flow/coupling.hpp, autoregressive.hpp, permutation.hpp, lu_linear.hpp, actnorm.hpp,
// scaling.hpp, sequential.hpp) through the shared numerical checker, typed over Cpu<double> and Cpu<float>.
#include <numbers>

#include "helpers.hpp"

using namespace tests;
#define CPU_BACKENDS biflow::Cpu<double>, biflow::Cpu<float>

TEST_CASE_TEMPLATE("affine coupling with half, alternating and user masks passes the numerical checks", B, CPU_BACKENDS) {
  Rng rng(1);
  const auto x = randn<B>(6, 5, 11);
  for (const auto& mask : {masks::half(5, 0), masks::half(5, 1), masks::alternating(5, 0), std::vector<int>{1, 0, 0, 1, 0}}) {
    auto layer = make_coupling<B>(mask, {8, 8}, rng);
    randomize(layer, 2);
    check_layer(layer, x);
  }
}

TEST_CASE_TEMPLATE("affine coupling keeps the masked dimensions and transforms the others from them alone", B,
                   CPU_BACKENDS) {
  // A flipped or misapplied mask still passes round trip and log-det checks; only the dependence structure shows it.
  Rng rng(31);
  for (const auto& mask : {masks::half(6, 0), masks::alternating(6, 1), std::vector<int>{1, 0, 0, 1, 1, 0}}) {
    auto layer = make_coupling<B, act::Tanh>(mask, {12}, rng);  // tanh: no dead units hiding a dependence
    randomize(layer, 32);
    const auto x = randn<B>(3, 6, 33);
    typename decltype(layer)::Context c;
    const auto y0 = to_host(layer.forward(x, c).y);
    const auto xh0 = to_host(x);
    for (long j = 0; j < 6; ++j)
      if (mask[std::size_t(j)]) CHECK((y0.col(j) - xh0.col(j)).cwiseAbs().maxCoeff() == 0.0);  // kept: y_j = x_j
      else CHECK((y0.col(j) - xh0.col(j)).cwiseAbs().maxCoeff() > 0.0);                        // transformed
    for (long i = 0; i < 6; ++i) {
      auto xh = xh0;
      xh.col(i).array() += 1;
      const auto y1 = to_host(layer.forward(from_host<B>(xh), c).y);
      for (long j = 0; j < 6; ++j) {
        const double diff = (y1.col(j) - y0.col(j)).cwiseAbs().maxCoeff();
        // y_j moves with x_i iff j == i, or j is transformed and i is kept (the conditioner's input).
        if (i == j || (!mask[std::size_t(j)] && mask[std::size_t(i)])) CHECK(diff > 0.0);
        else CHECK(diff == 0.0);
      }
    }
  }
}

TEST_CASE_TEMPLATE("affine coupling with any nn module as conditioner (GELU, tanh) passes", B, CPU_BACKENDS) {
  Rng rng(3);
  const auto x = randn<B>(5, 4, 12);
  auto g = make_coupling<B, act::GELU>(masks::half(4, 0), {7}, rng);
  auto t = make_coupling<B, act::Tanh>(masks::half(4, 1), {7, 5}, rng, 0, 0.0);  // unbounded scale
  randomize(g, 4);
  randomize(t, 5);
  check_layer(g, x);
  check_layer(t, x);
}

TEST_CASE_TEMPLATE("conditional affine coupling passes with a context vector", B, CPU_BACKENDS) {
  Rng rng(5);
  auto layer = make_coupling<B>(masks::alternating(4, 1), {8}, rng, 3);
  randomize(layer, 6);
  check_layer(layer, randn<B>(5, 4, 13), randn<B>(5, 3, 14));
}

TEST_CASE_TEMPLATE("coupling log-scale stays within its bound however large the conditioner output", B, CPU_BACKENDS) {
  Rng rng(7);
  auto layer = make_coupling<B>(masks::half(2, 0), {4}, rng, 0, 1.5);
  randomize(layer, 8, 50.0);
  typename decltype(layer)::Context ctx;
  const auto out = layer.forward(randn<B>(64, 2, 15, 10.0), ctx);
  const auto ld = to_host(out.logdet);
  CHECK(ld.cwiseAbs().maxCoeff() <= 1.5 + 1e-6);
  CHECK(all_finite(out.y));
}

TEST_CASE_TEMPLATE("NICE: additive coupling passes the checks with a log-det of exactly 0, conditional too, and "
                   "shifts only the unmasked dimensions", B, CPU_BACKENDS) {
  Rng rng(41);
  const auto x = randn<B>(6, 5, 42);
  for (const auto& mask : {masks::half(5, 0), masks::alternating(5, 1)}) {
    auto layer = make_additive_coupling<B, act::Tanh>(mask, {8, 8}, rng);
    randomize(layer, 43);
    check_layer(layer, x);
    const FlowOut<B> o = layer.forward(x);
    CHECK(to_host(o.logdet).cwiseAbs().maxCoeff() == 0.0);
    const auto xh = to_host(x), yh = to_host(o.y);
    for (long j = 0; j < 5; ++j)
      if (mask[std::size_t(j)]) CHECK((yh.col(j) - xh.col(j)).cwiseAbs().maxCoeff() == 0.0);
      else CHECK((yh.col(j) - xh.col(j)).cwiseAbs().maxCoeff() > 0.0);
  }
  auto cond = make_additive_coupling<B>(masks::half(4, 1), {8}, rng, 3);
  randomize(cond, 44);
  check_layer(cond, randn<B>(5, 4, 45), randn<B>(5, 3, 46));
  CHECK_THROWS_WITH_AS(AdditiveCoupling<B>(masks::half(4, 0), MLP<B>({4, 8, 8}, rng)),
                       doctest::Contains("must map 4 -> 4 features"), shape_error);
}

TEST_CASE_TEMPLATE("NICE: diagonal scaling passes the checks; its log-det is the sum of the log-scales", B,
                   CPU_BACKENDS) {
  DiagonalScaling<B> s(4);
  randomize(s, 47, 0.5);
  check_layer(s, randn<B>(5, 4, 48));
  const HostMatrix<double> ls = to_host(s.log_scale.value).template cast<double>();
  const FlowOut<B> o = s.forward(randn<B>(3, 4, 49));
  CHECK(to_host(o.logdet)(2, 0) == doctest::Approx(ls.sum()).epsilon(1e-5));
  // A NICE flow: couplings with alternating masks and a final scaling, through the checker as one layer.
  Rng rng(50);
  auto c1 = make_additive_coupling<B>(masks::half(4, 0), {8}, rng);
  auto c2 = make_additive_coupling<B>(masks::half(4, 1), {8}, rng);
  randomize(c1, 51);
  randomize(c2, 52);
  Sequential<decltype(c1), decltype(c2), DiagonalScaling<B>> nice(std::move(c1), std::move(c2), std::move(s));
  check_layer(nice, randn<B>(6, 4, 53));
}

TEST_CASE_TEMPLATE("MAF layer passes the numerical checks, unconditional and conditional", B, CPU_BACKENDS) {
  Rng rng(9);
  MaskedAutoregressive<B> a(5, {10, 10}, rng);
  MaskedAutoregressive<B> c(3, {6}, rng, 2);
  MaskedAutoregressive<B, act::SiLU> one(1, {4}, rng);
  randomize(a, 10);
  randomize(c, 11);
  randomize(one, 12);
  check_layer(a, randn<B>(4, 5, 16));
  check_layer(c, randn<B>(4, 3, 17), randn<B>(4, 2, 18));
  check_layer(one, randn<B>(4, 1, 19));
}

TEST_CASE_TEMPLATE("MAF output i depends only on inputs before i (autoregressive property)", B, CPU_BACKENDS) {
  Rng rng(13);
  MaskedAutoregressive<B, act::Tanh> maf(6, {12, 12}, rng);  // tanh: no dead units hiding a dependence
  randomize(maf, 14);
  const auto x = randn<B>(3, 6, 20);
  typename decltype(maf)::Context c;
  const auto z0 = to_host(maf.forward(x, c).y);
  for (long i = 0; i < 6; ++i) {
    auto xh = to_host(x);
    xh.col(i).array() += 1;
    const auto z1 = to_host(maf.forward(from_host<B>(xh), c).y);
    for (long j = 0; j < 6; ++j) {
      const double diff = (z1.col(j) - z0.col(j)).cwiseAbs().maxCoeff();
      if (j < i) CHECK(diff == 0.0);
      else CHECK(diff > 0.0);  // j == i via x_i itself, j > i via the conditioner
    }
  }
}

TEST_CASE_TEMPLATE("IAF (the MADE layer with sampling as its one-pass direction) passes the checks, its D-pass "
                   "density backward included, unconditional and conditional", B, CPU_BACKENDS) {
  Rng rng(61);
  InverseAutoregressive<B, act::Tanh> a(5, {10, 10}, rng);
  InverseAutoregressive<B> c(3, {6}, rng, 2);
  InverseAutoregressive<B, act::SiLU> one(1, {4}, rng);
  randomize(a, 62);
  randomize(c, 63);
  randomize(one, 64);
  check_layer(a, randn<B>(4, 5, 65));
  check_layer(c, randn<B>(4, 3, 66), randn<B>(4, 2, 67));
  check_layer(one, randn<B>(4, 1, 68));
  CHECK(std::string(decltype(a)::layer_name) == "InverseAutoregressive");
}

TEST_CASE_TEMPLATE("IAF sampling output i depends only on latents up to i, and its D-pass density undoes it", B,
                   CPU_BACKENDS) {
  Rng rng(71);
  InverseAutoregressive<B, act::Tanh> iaf(6, {12, 12}, rng);
  randomize(iaf, 72);
  const auto z = randn<B>(3, 6, 73);
  const auto x0 = to_host(iaf.inverse(z).y);
  for (long i = 0; i < 6; ++i) {
    auto zh = to_host(z);
    zh.col(i).array() += 1;
    const auto x1 = to_host(iaf.inverse(from_host<B>(zh)).y);
    for (long j = 0; j < 6; ++j) {
      const double diff = (x1.col(j) - x0.col(j)).cwiseAbs().maxCoeff();
      if (j < i) CHECK(diff == 0.0);
      else CHECK(diff > 0.0);
    }
  }
  // Density (x -> z, D sequential passes) undoes one-pass sampling exactly.
  const auto back = to_host(iaf.forward(from_host<B>(x0)).y);
  CHECK((back - to_host(z)).cwiseAbs().maxCoeff() < (std::is_same_v<typename B::scalar, double> ? 1e-10 : 1e-4));
}

TEST_CASE_TEMPLATE("reverse and seeded random permutations pass and are reproducible", B, CPU_BACKENDS) {
  Rng r1(42), r2(42);
  const auto p1 = Permutation<B>::random(7, r1), p2 = Permutation<B>::random(7, r2);
  CHECK(p1.indices() == p2.indices());
  check_layer(p1, randn<B>(3, 7, 21));
  check_layer(Permutation<B>::reverse(7), randn<B>(3, 7, 22));
  CHECK_THROWS_AS(Permutation<B>(std::vector<std::int32_t>{0, 0, 1}), usage_error);
}

TEST_CASE_TEMPLATE("LU-parameterised invertible linear layer passes the numerical checks", B, CPU_BACKENDS) {
  Rng rng(15);
  LULinear<B> lu(5, rng);
  check_layer(lu, randn<B>(4, 5, 23));
  randomize(lu, 16, 0.2);
  check_layer(lu, randn<B>(4, 5, 24));
}

TEST_CASE_TEMPLATE("ActNorm passes the checks and its data init whitens the first batch", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  const auto x = randn<B>(512, 3, 25, 4.0);
  ActNorm<B> an(3);
  an.data_init(x);
  CHECK(an.initialized());
  typename ActNorm<B>::Context c;
  const HostMatrix<double> y = to_host(an.forward(x, c).y).template cast<double>();
  const Eigen::RowVectorXd mean = y.colwise().mean();
  CHECK(mean.cwiseAbs().maxCoeff() < 1e-4);
  const Eigen::RowVectorXd var = (y.rowwise() - mean).array().square().colwise().mean();
  CHECK((var.array() - 1).abs().maxCoeff() < 1e-3);
  check_layer(an, randn<B>(4, 3, 26));
  (void)T{};
}

TEST_CASE_TEMPLATE("Sequential and Repeat compositions pass the checks and sum log-dets", B, CPU_BACKENDS) {
  Rng rng(17);
  auto c = make_coupling<B>(masks::half(4, 0), {6}, rng, 2);
  MaskedAutoregressive<B> m(4, {6}, rng, 2);
  randomize(c, 18);
  randomize(m, 19);
  Sequential<ActNorm<B>, decltype(c), Permutation<B>, MaskedAutoregressive<B>, LULinear<B>> seq(
      ActNorm<B>(4), c, Permutation<B>::reverse(4), m, LULinear<B>(4, rng));
  const auto x = randn<B>(5, 4, 27), ctx = randn<B>(5, 2, 28);
  check_layer(seq, x, ctx);
  Repeat<3, decltype(c)> rep([&](std::size_t i) {
    auto l = make_coupling<B>(masks::half(4, int(i % 2)), {6}, rng, 2);
    randomize(l, 20 + i);
    return l;
  });
  check_layer(rep, x, ctx);
  Repeat<dynamic, Sequential<MaskedAutoregressive<B>, Permutation<B>>> dyn(2, [&](std::size_t i) {
    MaskedAutoregressive<B> l(4, {6}, rng);
    randomize(l, 30 + i);
    return Sequential<MaskedAutoregressive<B>, Permutation<B>>(l, Permutation<B>::random(4, rng));
  });
  check_layer(dyn, x);
}

TEST_CASE_TEMPLATE("Standardize passes the checks, whitens the data it was fitted on, and corrects log p to data units",
                   B, CPU_BACKENDS) {
  using T = typename B::scalar;
  HostMatrix<T> xh = to_host(randn<B>(400, 3, 40));
  for (long i = 0; i < xh.rows(); ++i) {
    xh(i, 0) = T(5) + T(3) * xh(i, 0);
    xh(i, 1) = T(-2) + T(0.1) * xh(i, 1);
    xh(i, 2) = T(7);  // a constant feature: centred, not scaled
  }
  const Tensor<B> x = from_host<B>(xh);
  Standardize<B> s(3);
  CHECK_FALSE(s.fitted());
  s.data_init(x);
  REQUIRE(s.fitted());
  const HostMatrix<double> y = to_host(s.forward(x).y).template cast<double>();
  const Eigen::RowVectorXd mean = y.colwise().mean();
  CHECK(mean.cwiseAbs().maxCoeff() < 1e-4);
  const Eigen::RowVectorXd var = (y.rowwise() - mean).array().square().colwise().sum() / double(y.rows() - 1);
  CHECK(std::abs(var(0) - 1) < 1e-3);
  CHECK(std::abs(var(1) - 1) < 1e-3);
  CHECK(var(2) == 0.0);
  // Its log-det is -Σ log std: a Gaussian fitted in standardised units, put behind it, gives the same density as
  // the Gaussian in data units (here: a standard normal on the first two features, std 3 and 0.1).
  Standardize<B> two = Standardize<B>::from_stats(HostMatrix<T>{{T(5), T(-2)}}, HostMatrix<T>{{T(3), T(0.1)}});
  const Tensor<B> x2 = slice_cols(x, 0, 2);
  const HostMatrix<double> lp = to_host(log_prob(two, x2)).template cast<double>();
  const HostMatrix<double> x2h = to_host(x2).template cast<double>();
  for (long i = 0; i < 5; ++i) {
    const double u0 = (x2h(i, 0) - 5) / 3, u1 = (x2h(i, 1) + 2) / 0.1;
    const double expect = -0.5 * (u0 * u0 + u1 * u1) - std::log(2 * std::numbers::pi) - std::log(3.0) - std::log(0.1);
    CHECK(std::abs(lp(i, 0) - expect) < (std::is_same_v<T, double> ? 1e-9 : 1e-3));
  }
  // A layer that is not the identity passes the checker (its data_init does not refit).
  s.data_init(randn<B>(50, 3, 41));
  check_layer(s, randn<B>(4, 3, 42));
  CHECK(message<numeric_error>([&] { Standardize<B>::from_stats(HostMatrix<T>{{T(0)}}, HostMatrix<T>{{T(0)}}); })
            .find("std of feature 0 is 0") != std::string::npos);
}

TEST_CASE("sample_and_log_prob returns samples from the inverse and log p equal to log_prob at those samples") {
  using D = Cpu<double>;
  Rng rng(60);
  auto c = make_coupling<D>(masks::half(4, 0), {6}, rng, 2);
  randomize(c, 61);
  Sequential<Standardize<D>, decltype(c), Permutation<D>> flow(
      Standardize<D>::from_stats(HostMatrix<double>{{1, 2, 3, 4}}, HostMatrix<double>{{2, 0.5, 1, 3}}), c,
      Permutation<D>::reverse(4));
  const auto cond = randn<D>(7, 2, 62);
  Rng a(63), b(63);
  const auto s = sample_and_log_prob(flow, 7, a, cond);
  const auto x = sample(flow, 7, b, cond);
  CHECK((to_host(s.x) - to_host(x)).cwiseAbs().maxCoeff() == 0.0);  // the same noise stream, the same samples
  CHECK((to_host(s.log_prob) - to_host(log_prob(flow, s.x, cond))).cwiseAbs().maxCoeff() < 1e-10);
  // At a temperature the log-density is still the model's at the returned x.
  Rng t(64);
  const auto st = sample_and_log_prob(flow, 7, t, cond, 0.5);
  CHECK((to_host(st.log_prob) - to_host(log_prob(flow, st.x, cond))).cwiseAbs().maxCoeff() < 1e-10);
}
