// Sample-quality evaluation (eval/knn.hpp, eval/energy_distance.hpp, eval/kid.hpp, eval/precision_recall.hpp, eval/novelty.hpp,
// eval/sample_quality.hpp, eval/frechet.hpp, core/rng.hpp: choose_distinct): each statistic against an independent formula, and the suite ranking
// known-bad baselines (a memoriser, the mean + noise) as bad.
#include <Eigen/Eigenvalues>
#include <cmath>

#include "helpers.hpp"

using namespace biflow;
using tests::message;

namespace {
/// n rows of a mixture of `modes` well-separated Gaussians in d dimensions, each with strongly correlated
/// coordinates (a shared factor, as strokes correlate pixels); labels in `lab` if given.
HostMatrix<double> mixture(long n, long d, long modes, std::uint64_t seed, std::vector<int>* lab = nullptr) {
  Rng rng(seed);
  HostMatrix<double> x(n, d);
  for (long i = 0; i < n; ++i) {
    const long m = long(rng.below(std::uint64_t(modes)));
    if (lab) lab->push_back(int(m));
    const double f = rng.normal();
    for (long j = 0; j < d; ++j) x(i, j) = (j % modes == m ? 4.0 : 0.0) + 0.3 * rng.normal() + 0.8 * f;
  }
  return x;
}
HostMatrix<double> gaussian(long n, long d, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  HostMatrix<double> x(n, d);
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < d; ++j) x(i, j) = scale * rng.normal();
  return x;
}
}  // namespace

TEST_CASE("squared distances, nearest distances and k-NN radii match a direct loop") {
  const HostMatrix<double> a = gaussian(7, 3, 1), b = gaussian(5, 3, 2);
  const Eigen::MatrixXd d = squared_distances(a, b);
  const Eigen::VectorXd nn = nearest_distances(a, b);
  for (long i = 0; i < 7; ++i) {
    double best = 1e300;
    for (long j = 0; j < 5; ++j) {
      const double e = (a.row(i) - b.row(j)).squaredNorm();
      CHECK(d(i, j) == doctest::Approx(e).epsilon(1e-12));
      best = std::min(best, e);
    }
    CHECK(nn(i) == doctest::Approx(std::sqrt(best)).epsilon(1e-12));
  }
  const Eigen::VectorXd r = knn_radii(a, 2);
  for (long i = 0; i < 7; ++i) {
    std::vector<double> ds;
    for (long j = 0; j < 7; ++j)
      if (j != i) ds.push_back((a.row(i) - a.row(j)).norm());
    std::sort(ds.begin(), ds.end());
    CHECK(r(i) == doctest::Approx(ds[1]).epsilon(1e-12));  // the 2nd nearest other row
  }
  CHECK(median({3.0, 1.0, 2.0}) == 2.0);
  CHECK(median({4.0, 1.0, 3.0, 2.0}) == 2.5);
  CHECK(message<shape_error>([&] { knn_radii(a, 7); }).find("k = 7") != std::string::npos);
  CHECK(message<shape_error>([&] { squared_distances(a, gaussian(2, 4, 3)); }).find("3 and 4") != std::string::npos);
}

TEST_CASE("energy distance: the double-loop formula, ≈ 0 for one distribution, larger for shifted or collapsed sets") {
  Rng r(3);
  auto draw = [&](long n, double shift, double scale) {
    HostMatrix<double> m(n, 2);
    for (long i = 0; i < m.size(); ++i) m.data()[i] = shift + scale * r.normal();
    return m;
  };
  const HostMatrix<double> a = draw(300, 0, 1), b = draw(200, 0, 1);
  double ab = 0, aa = 0, bb = 0;
  for (long i = 0; i < 300; ++i)
    for (long j = 0; j < 200; ++j) ab += (a.row(i) - b.row(j)).norm();
  for (long i = 0; i < 300; ++i)
    for (long j = 0; j < 300; ++j) aa += i == j ? 0.0 : (a.row(i) - a.row(j)).norm();
  for (long i = 0; i < 200; ++i)
    for (long j = 0; j < 200; ++j) bb += i == j ? 0.0 : (b.row(i) - b.row(j)).norm();
  const double loop = 2 * ab / (300.0 * 200.0) - aa / (300.0 * 299.0) - bb / (200.0 * 199.0);
  CHECK(energy_distance(a, b) == doctest::Approx(loop).epsilon(1e-10));
  CHECK(std::abs(energy_distance(a, b)) < 0.02);
  CHECK(energy_distance(a, draw(200, 0.5, 1)) > 10 * std::abs(energy_distance(a, b)));
  CHECK(energy_distance(a, draw(200, 0, 0.1)) > 10 * std::abs(energy_distance(a, b)));
  CHECK(message<shape_error>([&] { energy_distance(a, HostMatrix<double>(1, 2)); }).find("at least 2 rows") != std::string::npos);
}

TEST_CASE("kernel distance equals the unbiased MMD² written as a double loop, and is ≈ 0 for one distribution") {
  const HostMatrix<double> x = gaussian(9, 4, 3), y = gaussian(6, 4, 4, 1.5);
  auto k = [](const auto& a, const auto& b) { return std::pow(a.dot(b) / 4.0 + 1.0, 3); };
  double sxx = 0, syy = 0, sxy = 0;
  for (long i = 0; i < 9; ++i)
    for (long j = 0; j < 9; ++j)
      if (i != j) sxx += k(x.row(i), x.row(j));
  for (long i = 0; i < 6; ++i)
    for (long j = 0; j < 6; ++j)
      if (i != j) syy += k(y.row(i), y.row(j));
  for (long i = 0; i < 9; ++i)
    for (long j = 0; j < 6; ++j) sxy += k(x.row(i), y.row(j));
  CHECK(kernel_distance(x, y) == doctest::Approx(sxx / 72 + syy / 30 - 2 * sxy / 54).epsilon(1e-12));
  // Unbiased: two samples of one distribution average ≈ 0 at any n; a shifted one does not.
  double same = 0;
  for (int s = 0; s < 20; ++s) same += kernel_distance(gaussian(50, 4, 100 + s), gaussian(50, 4, 200 + s)) / 20;
  HostMatrix<double> shifted = gaussian(50, 4, 300);
  shifted.array() += 0.5;
  const double diff = kernel_distance(gaussian(50, 4, 301), shifted);
  CHECK(std::abs(same) < 0.1 * diff);
  CHECK(message<shape_error>([&] { kernel_distance(gaussian(1, 4, 5), y); }).find("1 and 6") != std::string::npos);
}

TEST_CASE("precision and recall: 1 for a set against itself, low for a collapsed or shifted set") {
  const HostMatrix<double> real = gaussian(200, 3, 5);
  const PrecisionRecall self = precision_recall(real, real);
  CHECK(self.precision == 1.0);
  CHECK(self.recall == 1.0);
  const PrecisionRecall fresh = precision_recall(real, gaussian(200, 3, 6));
  CHECK(fresh.precision > 0.8);
  CHECK(fresh.recall > 0.8);
  // Mode collapse: every sample near the mean — precise but no recall.
  const PrecisionRecall collapsed = precision_recall(real, gaussian(200, 3, 7, 0.05));
  CHECK(collapsed.precision > 0.9);
  CHECK(collapsed.recall < 0.2);
  HostMatrix<double> far = gaussian(200, 3, 8);
  far.array() += 6.0;
  const PrecisionRecall off = precision_recall(real, far);
  CHECK(off.precision < 0.1);
  CHECK(off.recall < 0.1);
}

TEST_CASE("novelty is 0 for copies of training rows, about 1 for fresh draws, above 1 for noise") {
  const HostMatrix<double> train = mixture(600, 8, 4, 10), heldout = mixture(300, 8, 4, 11);
  CHECK(novelty(HostMatrix<double>(train.topRows(300)), heldout, train) < 1e-6);
  const double fresh = novelty(mixture(300, 8, 4, 12), heldout, train);
  CHECK(fresh > 0.85);
  CHECK(fresh < 1.15);
  CHECK(novelty(gaussian(300, 8, 13, 3.0), heldout, train) > 1.5);
  CHECK(message<numeric_error>([&] { novelty(heldout, train.topRows(5), train); }).find("median distance 0") !=
        std::string::npos);
}

TEST_CASE("Frechet distance matches the eigenvalue formula for non-commuting covariances") {
  // Independent formula: tr((Σ₁Σ₂)^{1/2}) = Σ sqrt(λ_i(Σ₁Σ₂)) (Σ₁Σ₂ is similar to a PSD matrix, real eigenvalues).
  HostMatrix<double> a = gaussian(400, 3, 20), b = gaussian(300, 3, 21);
  Eigen::Matrix3d ma, mb;
  ma << 1, 0.8, 0, 0, 1, 0, 0.3, 0, 0.5;
  mb << 2, 0, 0, -0.7, 0.4, 0, 0, 0.9, 1;
  a = a * ma;
  b = (b * mb).array() + 0.25;
  const GaussianFit ga = gaussian_fit(a), gb = gaussian_fit(b);
  REQUIRE((ga.cov * gb.cov - gb.cov * ga.cov).norm() > 0.5);  // the covariances do not commute
  const Eigen::VectorXcd ev = (ga.cov * gb.cov).eigenvalues();
  double tr_sqrt = 0;
  for (long i = 0; i < ev.size(); ++i) tr_sqrt += std::sqrt(std::max(0.0, ev(i).real()));
  const double expected = (ga.mean - gb.mean).squaredNorm() + ga.cov.trace() + gb.cov.trace() - 2 * tr_sqrt;
  CHECK(frechet_distance(ga, gb) == doctest::Approx(expected).epsilon(1e-9));
  CHECK(frechet_distance(gb, ga) == doctest::Approx(expected).epsilon(1e-9));
}

namespace {
struct Rows {
  HostMatrix<double> train, heldout, fresh, copies, mean_noise;
};
Rows mixture_rows() {
  Rows r;
  std::vector<int> lab;
  r.train = mixture(800, 8, 4, 30, &lab);
  r.heldout = mixture(300, 8, 4, 31);
  r.fresh = mixture(400, 8, 4, 32);
  r.copies = r.train.topRows(400);
  // Class mean + noise: per mode, the training rows' mean plus independent noise of each coordinate's own
  // spread (a diagonal Gaussian per class: right marginals, no correlations).
  r.mean_noise = HostMatrix<double>(400, 8);
  Rng rng(33);
  for (long i = 0; i < 400; ++i) {
    const int m = lab[std::size_t(i)];
    Eigen::RowVectorXd mu = Eigen::RowVectorXd::Zero(8), sq = Eigen::RowVectorXd::Zero(8);
    long cnt = 0;
    for (long j = 0; j < 800; ++j)
      if (lab[std::size_t(j)] == m) mu += r.train.row(j), sq += r.train.row(j).array().square().matrix(), ++cnt;
    mu /= double(cnt);
    const Eigen::RowVectorXd sd = (sq / double(cnt) - mu.array().square().matrix()).cwiseSqrt();
    for (long c = 0; c < 8; ++c) r.mean_noise(i, c) = mu(c) + sd(c) * rng.normal();
  }
  return r;
}
}  // namespace

TEST_CASE("the quality suite ranks a memoriser as a memoriser and the mean + noise as bad, at equal n") {
  const Rows d = mixture_rows();
  // Here the "features" are the points themselves.
  const QualitySuite suite(d.heldout, d.heldout, d.train, {.replicates = 40, .seed = 1});
  CHECK(suite.n() == 150);
  CHECK(suite.n_reference() == 150);
  const QualityRow real = suite.heldout_split(), fresh = suite.evaluate(d.fresh, d.fresh),
                   copies = suite.evaluate(d.copies, d.copies), mn = suite.evaluate(d.mean_noise, d.mean_noise);
  INFO("FD real " << real.fd.median << " fresh " << fresh.fd.median << " copies " << copies.fd.median << " mean+noise "
                  << mn.fd.median);
  // The memoriser is as "good" as real data under the distances (a copy *is* data) ...
  CHECK(copies.fd.lo < real.fd.hi);
  CHECK(copies.kid.lo < real.kid.hi);
  // ... and only novelty tells it apart: 0 for copies, ≈ 1 for fresh draws and for real data.
  CHECK(copies.novelty.hi < 1e-6);
  CHECK(fresh.novelty.median > 0.8);
  CHECK(fresh.novelty.median < 1.2);
  CHECK(real.novelty.lo < 1.0);
  CHECK(real.novelty.hi > 1.0);
  // Mean + noise (right marginals, no correlations): worse FD than every real or fresh interval, higher KID,
  // and samples off the data manifold (low precision).
  CHECK(mn.fd.lo > std::max(fresh.fd.hi, real.fd.hi));
  CHECK(mn.kid.median > fresh.kid.hi);  // KID at n = 150 is noisier than FD: the intervals of real data are wide
  CHECK(mn.kid.lo > std::max(fresh.kid.median, real.kid.median));
  CHECK(mn.precision.hi < 0.5 * fresh.precision.lo);
  // Fresh draws of the true distribution: intervals overlap the real-data floor.
  CHECK(fresh.fd.lo < real.fd.hi);
  CHECK(fresh.kid.lo < real.kid.hi);
  CHECK(fresh.precision.median > 0.7);
  CHECK(fresh.recall.median > 0.7);
  for (const QualityRow* r : {&real, &fresh, &copies, &mn}) {
    CHECK(r->fd.lo <= r->fd.median);
    CHECK(r->fd.median <= r->fd.hi);
    CHECK(r->n == 150);
  }
}

TEST_CASE("the quality suite is stable across resampling seeds and deterministic for one seed") {
  const Rows d = mixture_rows();
  const QualitySuite s1(d.heldout, d.heldout, d.train, {.replicates = 60, .seed = 1}),
      s1b(d.heldout, d.heldout, d.train, {.replicates = 60, .seed = 1}),
      s2(d.heldout, d.heldout, d.train, {.replicates = 60, .seed = 2});
  const QualityRow a = s1.evaluate(d.fresh, d.fresh), a2 = s1b.evaluate(d.fresh, d.fresh),
                   b = s2.evaluate(d.fresh, d.fresh);
  CHECK(a.fd.median == a2.fd.median);
  CHECK(a.kid.hi == a2.kid.hi);
  // Another seed moves each median by much less than its interval's width.
  for (auto [x, y] : {std::pair{a.fd, b.fd}, {a.kid, b.kid}, {a.precision, b.precision}, {a.recall, b.recall},
                      {a.novelty, b.novelty}}) {
    CHECK(std::abs(x.median - y.median) < 0.25 * (x.hi - x.lo) + 1e-12);
  }
}

TEST_CASE("the quality suite says what it expected when given too few or mismatched rows") {
  const Rows d = mixture_rows();
  const QualitySuite suite(d.heldout, d.heldout, d.train, {.replicates = 2});
  CHECK(message<shape_error>([&] { suite.evaluate(d.fresh.topRows(10), d.fresh.topRows(10)); })
            .find("need at least n = 150 candidate rows, got 10") != std::string::npos);
  CHECK(message<shape_error>([&] { suite.evaluate(d.fresh, d.fresh.leftCols(3)); }).find("expected 8 features") !=
        std::string::npos);
  CHECK(message<shape_error>([&] { QualitySuite(d.heldout.topRows(6), d.heldout.topRows(6), d.train); })
            .find("need at least 10 held-out rows") != std::string::npos);
}

TEST_CASE("baselines: copy_rows copies, class_mean_noise has each class's mean and spread but no correlations") {
  std::vector<int> lab;
  const HostMatrix<double> x = mixture(4000, 8, 4, 40, &lab);
  CHECK(copy_rows(x, {5, 2}).row(1) == x.row(2));
  CHECK(message<shape_error>([&] { copy_rows(x, {4000}); }).find("row 4000 outside [0, 4000)") != std::string::npos);
  Rng rng(41);
  const std::vector<int> want(4000, 2);
  const HostMatrix<double> b = class_mean_noise(x, lab, 4, want, rng);
  HostMatrix<double> c2;
  for (long r = 0, k = 0; r < x.rows(); ++r)
    if (lab[std::size_t(r)] == 2) c2.conservativeResize(++k, 8), c2.row(k - 1) = x.row(r);
  const GaussianFit real = gaussian_fit(c2), base = gaussian_fit(b);
  CHECK((real.mean - base.mean).cwiseAbs().maxCoeff() < 0.05);
  CHECK((real.cov.diagonal() - base.cov.diagonal()).cwiseAbs().maxCoeff() < 0.06);
  CHECK(real.cov(0, 1) > 0.5);             // the data's coordinates are correlated ...
  CHECK(std::abs(base.cov(0, 1)) < 0.05);  // ... the baseline's are not
  CHECK(message<usage_error>([&] { class_mean_noise(x, lab, 4, {7}, rng); }).find("class 7") != std::string::npos);
}

TEST_CASE("the quality suite does not depend on the feature network's output scale (KID and FD up to 1/s²)") {
  const Rows d = mixture_rows();
  const QualitySuite a(d.heldout, d.heldout, d.train, {.replicates = 10}),
      b(HostMatrix<double>(100.0 * d.heldout), d.heldout, d.train, {.replicates = 10});
  const QualityRow ra = a.evaluate(d.fresh, d.fresh), rb = b.evaluate(HostMatrix<double>(100.0 * d.fresh), d.fresh);
  CHECK(rb.fd.median == doctest::Approx(ra.fd.median).epsilon(1e-9));
  CHECK(rb.kid.median == doctest::Approx(ra.kid.median).epsilon(1e-9));
  CHECK(b.feature_scale() == doctest::Approx(a.feature_scale() / 100.0).epsilon(1e-12));
  HostMatrix<double> bad = d.fresh;
  bad(3, 2) = std::nan("");
  CHECK(message<numeric_error>([&] { a.evaluate(bad, d.fresh); }).find("features are not finite") != std::string::npos);
  CHECK(message<numeric_error>([&] { a.evaluate(d.fresh, bad); }).find("points are not finite") != std::string::npos);
}

TEST_CASE("categorical bits/dim baseline: log2(levels) for uniform pixels, lower per class when classes differ") {
  // Two classes, 2 pixels, 4 levels: class 0 always (0, 1), class 1 always (3, 2).
  HostMatrix<double> train(40, 2), test(4, 2);
  std::vector<int> ltr, lte;
  for (long r = 0; r < 40; ++r) {
    const int c = int(r % 2);
    train.row(r) << (c ? 3 : 0), (c ? 2 : 1);
    ltr.push_back(c);
  }
  for (long r = 0; r < 4; ++r) test.row(r) = train.row(r), lte.push_back(ltr[std::size_t(r)]);
  const double a = 0.1;
  // Unconditional: each observed level has probability (20 + a) / (40 + 4a).
  CHECK(categorical_bits_per_dim(train, ltr, test, lte, 4, false, a) ==
        doctest::Approx(-std::log2((20 + a) / (40 + 4 * a))).epsilon(1e-12));
  // Per class: (20 + a) / (20 + 4a), nearly 0 bits.
  CHECK(categorical_bits_per_dim(train, ltr, test, lte, 4, true, a) ==
        doctest::Approx(-std::log2((20 + a) / (20 + 4 * a))).epsilon(1e-12));
  HostMatrix<double> bad = test;
  bad(0, 0) = 7;
  CHECK(message<usage_error>([&] { categorical_bits_per_dim(train, ltr, bad, lte, 4, false); }).find("pixel value 7") !=
        std::string::npos);
}

TEST_CASE("choose_distinct draws k distinct indices in range; k = n is a permutation") {
  Rng a(3), b(3);
  const std::vector<long> p = choose_distinct(50, 20, a);
  CHECK(p == choose_distinct(50, 20, b));  // a function of the stream
  CHECK(p.size() == 20);
  std::vector<long> s = p;
  std::sort(s.begin(), s.end());
  CHECK(std::adjacent_find(s.begin(), s.end()) == s.end());
  CHECK(s.front() >= 0);
  CHECK(s.back() < 50);
  std::vector<long> all = choose_distinct(9, 9, a);
  std::sort(all.begin(), all.end());
  for (long i = 0; i < 9; ++i) CHECK(all[std::size_t(i)] == i);
}
