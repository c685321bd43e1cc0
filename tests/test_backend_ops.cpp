// Backend primitives (backend/ops.hpp, backend/cpu/ops.hpp, backend/functors.hpp, backend/tags.hpp,
// backend/tensor.hpp), the counter-based RNG (core/rng.hpp) and the opt-in allocator tuning
// (backend/cpu/allocator.hpp), core/fast_math.hpp, backend/cpu/parallel.hpp, backend/host_linalg.hpp,
// backend/cpu/memory.hpp, backend/cpu/reduce.hpp. The Cuda twins are compared against these in tests/cuda.
#include <cstdio>
#include <limits>
#include <memory>
#include <vector>

#include "helpers.hpp"

using namespace tests;
#define CPU_BACKENDS biflow::Cpu<double>, biflow::Cpu<float>

TEST_CASE_TEMPLATE("gemm equals the naive triple loop for every transpose combination, with accumulation", B,
                   CPU_BACKENDS) {
  using T = typename B::scalar;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const long m = 5, k = 4, n = 3;
      const auto a = randn<B>(ta ? k : m, ta ? m : k, 1), b = randn<B>(tb ? n : k, tb ? k : n, 2);
      Tensor<B> c = randn<B>(m, n, 3);
      const HostMatrix<T> c0 = to_host(c), ah = to_host(a), bh = to_host(b);
      gemm(a, ta, b, tb, c, T(0.5), T(2));
      for (long i = 0; i < m; ++i)
        for (long j = 0; j < n; ++j) {
          double s = 0;
          for (long l = 0; l < k; ++l) s += double(ta ? ah(l, i) : ah(i, l)) * double(tb ? bh(j, l) : bh(l, j));
          CHECK(double(to_host(c)(i, j)) == doctest::Approx(0.5 * s + 2 * double(c0(i, j))).epsilon(1e-5));
        }
    }
  Tensor<B> wrong(2, 2);
  CHECK(message<shape_error>([&] { gemm(randn<B>(3, 4, 1), false, randn<B>(4, 5, 2), false, wrong, T(1), T(1)); })
            .find("accumulating into a 2x2 tensor, expected 3x5") != std::string::npos);
}

TEST_CASE_TEMPLATE("gemm at BLAS sizes (the configured engine: Eigen or a CBLAS from its crossover up) equals a double "
                   "reference, on views, in row blocks, overwriting NaN when beta is 0", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  INFO("Cpu GEMM engine: " << cpu::gemm_engine() << " from m*n*k >= " << cpu::min_blas_mnk());
  struct Case {
    long m, k, n;
  };
  // The last two: narrow results (a Linear's input gradient into a few features), which go to the BLAS as A·Bᵀ.
  for (const Case cs : {Case{300, 70, 130}, Case{2048, 64, 64}, Case{64, 512, 96}, Case{2048, 64, 4}, Case{512, 768, 3}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const long m = cs.m, k = cs.k, n = cs.n;
        // Operands as views into a larger buffer, as parameters are views of the flat buffer.
        auto store = std::make_shared<Tensor<B>>(randn<B>(1, 7 + (m + n) * k, 4));
        Tensor<B> a, b;
        a.bind_view(store, 7, ta ? k : m, ta ? m : k);
        b.bind_view(store, 7 + m * k, tb ? n : k, tb ? k : n);
        const HostMatrix<double> ad = to_host(a).template cast<double>(), bd = to_host(b).template cast<double>();
        const HostMatrix<double> want = (ta ? HostMatrix<double>(ad.transpose()) : ad) *
                                        (tb ? HostMatrix<double>(bd.transpose()) : bd);
        Tensor<B> c = constant<B>(m, n, std::numeric_limits<T>::quiet_NaN());
        gemm(a, ta, b, tb, c, T(1), T(0));
        const double tol = std::is_same_v<T, float> ? 1e-4 * double(k) : 1e-12 * double(k);
        CHECK((to_host(c).template cast<double>() - want).cwiseAbs().maxCoeff() < tol);
        gemm(a, ta, b, tb, c, T(-0.5), T(1));  // accumulate: C = want - want / 2
        CHECK((to_host(c).template cast<double>() - 0.5 * want).cwiseAbs().maxCoeff() < tol);
      }
}

TEST_CASE_TEMPLATE("map broadcasts rows and columns; zip shapes its result like the largest input", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  const auto x = randn<B>(4, 3, 1), row = randn<B>(1, 3, 2), col = randn<B>(4, 1, 3);
  const auto y = to_host(zip(fn::AddMul{}, x, row, col));  // x + row * col
  const auto xh = to_host(x), rh = to_host(row), ch = to_host(col);
  for (long i = 0; i < 4; ++i)
    for (long j = 0; j < 3; ++j) CHECK(y(i, j) == doctest::Approx(xh(i, j) + rh(0, j) * ch(i, 0)));
  const auto z = zip(fn::Mul{}, row, col);  // outer product by broadcasting both ways
  CHECK(z.rows() == 4);
  CHECK(z.cols() == 3);
  Tensor<B> inplace = x;
  map(inplace, fn::Scale{2.0}, inplace);
  CHECK((to_host(inplace) - T(2) * xh).cwiseAbs().maxCoeff() == T(0));
  CHECK(message<shape_error>([&] { zip(fn::Add{}, x, randn<B>(2, 3, 4)); }).find("cannot broadcast a 2x3") !=
        std::string::npos);
}

TEST_CASE_TEMPLATE("reductions, slicing, concatenation and gathers", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  const auto x = randn<B>(5, 4, 1);
  const auto xh = to_host(x);
  CHECK((to_host(row_sum(x)) - HostMatrix<T>(xh.rowwise().sum())).cwiseAbs().maxCoeff() < 1e-5);
  Tensor<B> cs = constant<B>(1, 4, T(1));
  col_sum(x, cs, T(3));
  CHECK((to_host(cs) - (HostMatrix<T>::Constant(1, 4, T(3)) + HostMatrix<T>(xh.colwise().sum()))).cwiseAbs().maxCoeff() <
        1e-5);
  CHECK(double(sum(x)) == doctest::Approx(double(xh.sum())).epsilon(1e-5));
  CHECK(double(sum_sq(x)) == doctest::Approx(double(xh.squaredNorm())).epsilon(1e-5));
  CHECK((to_host(slice_cols(x, 1, 2)) - HostMatrix<T>(xh.middleCols(1, 2))).cwiseAbs().maxCoeff() == T(0));
  const auto cat = to_host(concat_cols(slice_cols(x, 0, 1), slice_cols(x, 1, 3)));
  CHECK((cat - xh).cwiseAbs().maxCoeff() == T(0));
  const auto g = to_host(gather_cols(x, make_indices<B>({3, 0, 0})));
  CHECK(g.col(0) == xh.col(3));
  CHECK(g.col(2) == xh.col(0));
  HostMatrix<T> bad = xh;
  bad(2, 1) = std::numeric_limits<T>::infinity();
  CHECK(all_finite(x));
  CHECK_FALSE(all_finite(from_host<B>(bad)));
  const auto inv = to_host(inverse(randn<B>(4, 4, 9)));
  CHECK((inv * to_host(randn<B>(4, 4, 9)) - HostMatrix<T>::Identity(4, 4)).cwiseAbs().maxCoeff() < 1e-4);
}

TEST_CASE_TEMPLATE("layernorm primitives match the formula", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  const auto x = randn<B>(3, 6, 1, 2.0), g = randn<B>(1, 6, 2), b = randn<B>(1, 6, 3);
  Tensor<B> y, mean, rstd;
  layernorm_forward(x, g, b, T(1e-5), y, mean, rstd);
  const auto xh = to_host(x), yh = to_host(y), gh = to_host(g), bh = to_host(b);
  for (long r = 0; r < 3; ++r) {
    const double mu = double(xh.row(r).mean());
    const double var = (xh.row(r).array().template cast<double>() - mu).square().mean();
    for (long c = 0; c < 6; ++c)
      CHECK(double(yh(r, c)) ==
            doctest::Approx((double(xh(r, c)) - mu) / std::sqrt(var + 1e-5) * double(gh(0, c)) + double(bh(0, c)))
                .epsilon(1e-4));
  }
}

TEST_CASE("16-lane row sums (cpu/reduce.hpp) equal the double sum on lengths with and without a remainder") {
  for (long n : {0L, 1L, 15L, 16L, 17L, 64L, 100L, 1000L}) {
    std::vector<float> v(static_cast<std::size_t>(n));
    double exact = 0;
    for (long i = 0; i < n; ++i) {
      v[std::size_t(i)] = float(std::sin(0.37 * double(i)) * 3.0 + 0.1);
      exact += double(v[std::size_t(i)]);
    }
    const float s = cpu::detail::lane_sum(n, [&](long i) { return v[std::size_t(i)]; });
    CHECK(double(s) == doctest::Approx(exact).epsilon(1e-6).scale(1.0));
  }
}

TEST_CASE_TEMPLATE("layernorm forward and backward on wide rows (the lane path and its remainder) match double math",
                   B, CPU_BACKENDS) {
  using T = typename B::scalar;
  for (long C : {64L, 100L}) {
    const long R = 5;
    const auto x = randn<B>(R, C, 11, 3.0), g = randn<B>(1, C, 12), b = randn<B>(1, C, 13), dy = randn<B>(R, C, 14);
    Tensor<B> y, mean, rstd, dg(1, C), db(1, C);
    layernorm_forward(x, g, b, T(1e-5), y, mean, rstd);
    const auto dx = to_host(layernorm_backward(x, g, mean, rstd, dy, dg, db));
    const HostMatrix<double> xh = to_host(x).template cast<double>(), gh = to_host(g).template cast<double>(),
                             bh = to_host(b).template cast<double>(), dyh = to_host(dy).template cast<double>();
    const auto yh = to_host(y), dgh = to_host(dg), dbh = to_host(db);
    Eigen::RowVectorXd edg = Eigen::RowVectorXd::Zero(C), edb = Eigen::RowVectorXd::Zero(C);
    double worst_y = 0, worst_dx = 0;
    for (long r = 0; r < R; ++r) {
      const double mu = xh.row(r).mean();
      const double rs = 1 / std::sqrt((xh.row(r).array() - mu).square().mean() + 1e-5);
      const Eigen::RowVectorXd xhat = (xh.row(r).array() - mu) * rs;
      const Eigen::RowVectorXd gg = dyh.row(r).cwiseProduct(gh);
      const double s1 = gg.mean(), s2 = gg.cwiseProduct(xhat).mean();
      for (long c = 0; c < C; ++c) {
        worst_y = std::max(worst_y, std::abs(double(yh(r, c)) - (xhat(c) * gh(0, c) + bh(0, c))));
        worst_dx = std::max(worst_dx, std::abs(double(dx(r, c)) - rs * (gg(c) - s1 - xhat(c) * s2)));
      }
      edg += dyh.row(r).cwiseProduct(xhat);
      edb += dyh.row(r);
    }
    const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-10;
    CHECK(worst_y < tol);
    CHECK(worst_dx < tol);
    CHECK((dgh.template cast<double>() - edg).cwiseAbs().maxCoeff() < tol * 10);
    CHECK((dbh.template cast<double>() - edb).cwiseAbs().maxCoeff() < tol * 10);
  }
}

TEST_CASE("the counter-based RNG is reproducible, splittable and has the right moments") {
  using B = Cpu<double>;
  Rng a(7), b(7);
  Tensor<B> x(200, 500), y(200, 500);
  fill_normal(x, a);
  fill_normal(y, b);
  CHECK(a.counter() == 100000);
  CHECK((to_host(x) - to_host(y)).cwiseAbs().maxCoeff() == 0.0);
  const auto h = to_host(x);
  CHECK(std::abs(h.mean()) < 0.01);
  CHECK(std::sqrt((h.array() - h.mean()).square().mean()) == doctest::Approx(1.0).epsilon(0.01));
  Tensor<B> u(1000, 100);
  fill_uniform(u, a, 2.0, 3.0);
  CHECK(to_host(u).minCoeff() >= 2.0);
  CHECK(to_host(u).maxCoeff() < 3.0);
  CHECK(to_host(u).mean() == doctest::Approx(2.5).epsilon(0.01));
  Rng s1 = a.split(), s2 = a.split();
  CHECK(s1.seed() != s2.seed());
  // Filling in two halves draws exactly the numbers of one fill (counters, not hidden state).
  Rng c(3), d(3);
  Tensor<B> whole(1, 10), h1(1, 4), h2(1, 6);
  fill_normal(whole, c);
  fill_normal(h1, d);
  fill_normal(h2, d);
  CHECK(to_host(whole)(0, 5) == to_host(h2)(0, 1));
}

TEST_CASE("backend tags: Cpu accepts float and double, the Backend concept recognises the tags") {
  static_assert(Backend<Cpu<float>> && Backend<Cpu<double>> && Backend<Cuda<float>> && !Backend<int>);
  static_assert(std::is_same_v<Cpu<double>::scalar, double>);
  CHECK(std::string(Cpu<float>::name) == "Cpu");
}

TEST_CASE("keep_heap_pages (cpu/allocator.hpp) takes effect with glibc's allocator, and says so otherwise") {
#if defined(__SANITIZE_ADDRESS__)
  CHECK_FALSE(cpu::keep_heap_pages());  // ASan's allocator replaces glibc's: mallopt reports no effect
#elif defined(__GLIBC__)
  CHECK(cpu::keep_heap_pages());
#else
  CHECK_FALSE(cpu::keep_heap_pages());
#endif
}

TEST_CASE("Progress (train/progress.hpp) prints periodic plain lines when not on a terminal, and the last one") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f);
  {
    Progress p(40, "fit", f);
    for (long s = 1; s <= 40; ++s) p.update(s, 1.5);
  }
  std::rewind(f);
  char buf[4096] = {};
  const std::size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  const std::string out(buf, n);
  CHECK(out.find("fit 2/40  loss 1.5000") != std::string::npos);
  CHECK(out.find("fit 40/40") != std::string::npos);
  CHECK(out.find("steps/s") != std::string::npos);
  CHECK(out.find('\r') == std::string::npos);  // no live-line control characters in logs
  CHECK(std::count(out.begin(), out.end(), '\n') == 20);
}

// ---- core/fast_math.hpp, backend/cpu/parallel.hpp ---------------------------------------------------------------

TEST_CASE("fast float exp and erf stay within a few float ulps of the library functions") {
  double worst_exp = 0, worst_erf = 0;
  for (float x = -87.0f; x < 88.0f; x += 0.0137f)
    worst_exp = std::max(worst_exp, std::abs(double(fastmath::exp(x)) - std::exp(double(x))) / std::exp(double(x)));
  for (float x = -6.0f; x < 6.0f; x += 0.00071f)
    worst_erf = std::max(worst_erf, std::abs(double(fastmath::erf(x)) - std::erf(double(x))));
  CHECK(worst_exp < 5e-7);
  CHECK(worst_erf < 1e-6);
}

TEST_CASE("parallel_range visits every index exactly once, in chunks no smaller than the grain") {
  for (long n : {0L, 1L, 1000L, 200001L}) {
    std::vector<int> seen(static_cast<std::size_t>(n), 0);
    cpu::parallel_range(n, 4096, [&](long lo, long hi) {
      CHECK(hi > lo);
      for (long i = lo; i < hi; ++i) ++seen[static_cast<std::size_t>(i)];
    });
    CHECK(std::count(seen.begin(), seen.end(), 1) == n);
  }
  CHECK(cpu::threads() >= 1);
}

TEST_CASE("host_linalg: slogdet_rows of stacked matrices and the LU factors of a random rotation") {
  // Two 2x2 matrices stacked: det = 6 and det = -2 -> log|det| = log 6, log 2.
  HostMatrix<double> j(4, 2);
  j << 2, 1, 0, 3, 1, 2, 1, 0;
  const HostMatrix<double> ld = linalg::slogdet_rows(j, 2, 2);
  CHECK(ld(0, 0) == doctest::Approx(std::log(6.0)).epsilon(1e-12));
  CHECK(ld(1, 0) == doctest::Approx(std::log(2.0)).epsilon(1e-12));
  // P·L·U rebuilds an orthogonal matrix: (P L U)ᵀ (P L U) = I.
  Rng rng(5);
  HostMatrix<double> g(4, 4);
  for (long i = 0; i < g.size(); ++i) g.data()[i] = rng.normal();
  const linalg::RotationLU r = linalg::rotation_lu(g);
  HostMatrix<double> l = HostMatrix<double>::Identity(4, 4), u = HostMatrix<double>::Zero(4, 4);
  for (long a = 0; a < 4; ++a)
    for (long b = 0; b < 4; ++b) (b < a ? l(a, b) : u(a, b)) = r.lu(a, b);
  const HostMatrix<double> q = r.perm * l * u;
  CHECK((q.transpose() * q - HostMatrix<double>::Identity(4, 4)).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("cpu memory figures: resident size and a resettable peak that sees a touched allocation") {
  const long long now = cpu::resident_bytes();
  if (now < 0) return;  // no /proc here
  CHECK(now > 0);
  if (!cpu::reset_resident_peak()) return;
  const long long before = cpu::resident_peak_bytes();
  {
    std::vector<char> big(std::size_t(64) << 20, 1);  // 64 MiB, every page written
    CHECK(cpu::resident_peak_bytes() >= before + (std::int64_t(60) << 20));
  }
}

