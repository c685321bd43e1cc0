// Toy sets, CSV input (including bad files), standardisation, labelled images (data/images.hpp), mini-batches
// (data/batch_sampler.hpp).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <fstream>

#include "helpers.hpp"

using namespace tests;

namespace {
/// Writes body to a file in the system temp directory (never into the source tree) and returns its path.
std::string write_tmp(const std::string& name, const std::string& body) {
  const std::string p = tests::temp_path(name);
  std::ofstream(p) << body;
  return p;
}
}  // namespace

TEST_CASE("built-in toy sets are 2-D, deterministic per seed, and distinct") {
  for (const auto& name : data::toy_names()) {
    Rng a(1), b(1), c(2);
    const auto x = data::toy(name, 500, a);
    CHECK(x.rows() == 500);
    CHECK(x.cols() == 2);
    CHECK((x - data::toy(name, 500, b)).cwiseAbs().maxCoeff() == 0.0);
    CHECK((x - data::toy(name, 500, c)).cwiseAbs().maxCoeff() > 0.0);
    CHECK(x.allFinite());
  }
  Rng r(3);
  CHECK(message<usage_error>([&] { data::toy("spirals", 10, r); }).find("unknown data set 'spirals'") != std::string::npos);
}

TEST_CASE("checkerboard points fall only on the dark squares") {
  Rng r(4);
  const auto x = data::toy("checkerboard", 2000, r);
  for (long i = 0; i < x.rows(); ++i) {
    const long cx = long(std::floor(x(i, 0) / 2)), cy = long(std::floor(x(i, 1) / 2));
    CHECK(((cx + cy) % 2 + 2) % 2 == 0);
  }
}

TEST_CASE("CSV with and without header loads as numbers") {
  const auto a = data::load_csv(write_tmp("h.csv", "x,y,z\n1,2,3\n4,5.5,-6e-1\n"));
  CHECK(a.rows() == 2);
  CHECK(a(1, 2) == doctest::Approx(-0.6));
  std::vector<std::string> header;
  data::load_csv(write_tmp("h2.csv", "a,b\n1,2\n"), &header);
  CHECK(header == std::vector<std::string>{"a", "b"});
  const auto b = data::load_csv(write_tmp("n.csv", "1,2\n\n3,4\n"));
  CHECK(b.rows() == 2);
}

TEST_CASE("bad CSV files raise errors naming the problem and the place") {
  CHECK(message<io_error>([] { data::load_csv("does_not_exist.csv"); }).find("cannot open") != std::string::npos);
  CHECK(message<io_error>([] { data::load_csv(write_tmp("e.csv", "")); }).find("no data rows") != std::string::npos);
  const auto text = message<io_error>([] { data::load_csv(write_tmp("t.csv", "1,2\n3,abc\n")); });
  CHECK(text.find("line 2 column 2: 'abc' is not a number") != std::string::npos);
  const auto ragged = message<io_error>([] { data::load_csv(write_tmp("r.csv", "1,2\n3,4,5\n")); });
  CHECK(ragged.find("line 2: expected 2 columns, got 3") != std::string::npos);
  const auto nan = message<numeric_error>([] { data::load_csv(write_tmp("nan.csv", "a,b\n1,2\n3,nan\n")); });
  CHECK(nan.find("non-finite value") != std::string::npos);
  CHECK(nan.find("data row 1") != std::string::npos);
}

TEST_CASE("standardizer round-trips and its log-det is −Σ log std") {
  Rng r(5);
  HostMatrix<double> x = data::toy("rings", 1000, r);
  x.col(1) *= 10;
  const auto s = data::Standardizer::fit(x);
  const auto u = s.transform(x);
  CHECK(u.colwise().mean().cwiseAbs().maxCoeff() < 1e-12);
  CHECK((s.inverse(u) - x).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(s.log_abs_det() == doctest::Approx(-std::log(s.stddev(0)) - std::log(s.stddev(1))));
}

TEST_CASE("full-covariance Gaussian NLL equals the closed form for a standard normal sample") {
  Rng r(6);
  HostMatrix<double> x(20000, 2);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = r.normal();
  CHECK(data::gaussian_nll(x, x) == doctest::Approx(std::log(2 * std::numbers::pi) + 1.0).epsilon(0.01));
}

TEST_CASE("full-covariance Gaussian NLL equals a direct log-density with correlated, shifted, unequal variances") {
  // x = μ + L ε with a non-diagonal L: an isotropic or diagonal fit would miss log|Σ| and the cross terms.
  Eigen::Matrix3d L;
  L << 1.5, 0, 0, 0.9, 0.4, 0, -0.6, 0.3, 0.2;
  const Eigen::RowVector3d mu(1.0, -2.0, 0.5);
  Rng r(7);
  auto draw = [&](long n) {
    HostMatrix<double> e(n, 3);
    for (long i = 0; i < e.size(); ++i) e.data()[i] = r.normal();
    return HostMatrix<double>((e * L.transpose()).rowwise() + mu);
  };
  const HostMatrix<double> train = draw(4000), test = draw(50);
  // Direct: mean over test rows of −log N(x; μ̂, Σ̂) with the fit written out (ML covariance, 1/n).
  const Eigen::RowVectorXd m = train.colwise().mean();
  const Eigen::MatrixXd c = train.rowwise() - m;
  const Eigen::Matrix3d S = (c.transpose() * c) / double(train.rows());
  const Eigen::Matrix3d Si = S.inverse();
  double direct = 0;
  for (long i = 0; i < test.rows(); ++i) {
    const Eigen::RowVector3d d = test.row(i) - m;
    direct += 0.5 * (d * Si * d.transpose())(0, 0) + 0.5 * std::log(S.determinant()) + 1.5 * std::log(2 * std::numbers::pi);
  }
  direct /= double(test.rows());
  CHECK(data::gaussian_nll(train, test) == doctest::Approx(direct).epsilon(1e-10));
  // And the population value: entropy ½ log|2πe Σ| with Σ = L Lᵀ.
  CHECK(data::gaussian_nll(train, draw(20000)) ==
        doctest::Approx(0.5 * std::log((2 * std::numbers::pi * std::exp(1.0)) * (2 * std::numbers::pi * std::exp(1.0)) *
                                       (2 * std::numbers::pi * std::exp(1.0)) * (L * L.transpose()).determinant()))
            .epsilon(0.02));
}

TEST_CASE("one_hot (data/labels.hpp) encodes labels and names a label out of range") {
  const auto m = data::one_hot({2, 0, 1}, 3);
  CHECK(m.rows() == 3);
  CHECK(m(0, 2) == 1.0f);
  CHECK(m.sum() == 3.0f);
  CHECK(message<usage_error>([] { data::one_hot({0, 5}, 3); }) == "one_hot: label 5 at row 1 is outside [0, 3)");
  CHECK(message<usage_error>([] { data::one_hot({0}, 0); }).find("must be positive") != std::string::npos);
}

// ---- data/images.hpp ----------------------------------------------------------------------------------------

TEST_CASE("labelled images load with validation, dequantise into [-1, 1) within each pixel's bin and quantise back") {
  const std::string path = tests::temp_path("images.csv");
  {
    std::ofstream f(path);
    f << "0,16,3,1\n5,0,16,0\n";
  }
  const data::LabeledImages d = data::load_labeled_images(path, 3, 17, 2);
  CHECK(d.rows() == 2);
  CHECK(d.labels == std::vector<int>{1, 0});
  CHECK(d.pixels(1, 2) == 16.0f);
  Rng rng(1);
  const HostMatrix<float> x = data::dequantize(d.pixels, 17, rng);
  for (long i = 0; i < x.size(); ++i) {
    const float lo = 2.0f * d.pixels.data()[i] / 17.0f - 1.0f;
    CHECK(x.data()[i] >= lo);
    CHECK(x.data()[i] < lo + 2.0f / 17.0f + 1e-6f);
  }
  CHECK(data::dequantize_scale(17) == doctest::Approx(2.0 / 17.0));
  // quantize undoes dequantize; bin centres map back to their level; out-of-range values clamp to the end levels.
  CHECK(data::quantize(x, 17) == d.pixels);
  CHECK(data::quantize(data::level_centers(d.pixels, 17), 17) == d.pixels);
  HostMatrix<float> far(1, 2);
  far << -3.0f, 2.5f;
  CHECK(data::quantize(far, 17)(0, 0) == 0.0f);
  CHECK(data::quantize(far, 17)(0, 1) == 16.0f);
  far(0, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(data::quantize(far, 17), doctest::Contains("value 1 is nan"));
  CHECK(d.slice(1, 1).labels == std::vector<int>{0});
  {
    std::ofstream f(path);
    f << "0,17,3,1\n";
  }
  CHECK(message<io_error>([&] { data::load_labeled_images(path, 3, 17, 2); }).find("row 1 column 2: 17") !=
        std::string::npos);
  {
    std::ofstream f(path);
    f << "0,1,3,2\n";
  }
  CHECK(message<io_error>([&] { data::load_labeled_images(path, 3, 17, 2); }).find("(label)") != std::string::npos);
  CHECK(message<io_error>([&] { data::load_labeled_images(path, 4, 17, 2); }).find("expected 4 pixels") !=
        std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("the vendored digits load: 1797 images of 64 pixels in 0..16, labels 0..9") {
  const data::LabeledImages d = data::load_digits(BIFLOW_SOURCE_DIR "/data/digits.csv");
  CHECK(d.rows() == 1797);
  CHECK(d.pixels.cols() == 64);
  CHECK(d.pixels.maxCoeff() == 16.0f);
  CHECK(*std::max_element(d.labels.begin(), d.labels.end()) == 9);
}

TEST_CASE("BatchSampler in epochs visits every row once per epoch, reshuffles, and resumes from its position") {
  data::BatchSampler s(10, 3, data::Sampling::epochs, 7);
  CHECK(s.batches_per_epoch() == 3);  // drop_last: 3 full batches, one row left for a later epoch's order
  std::vector<std::vector<long>> epochs(2);
  for (int e = 0; e < 2; ++e)
    for (int k = 0; k < 3; ++k) {
      const auto idx = s.next();
      CHECK(idx.size() == 3);
      epochs[std::size_t(e)].insert(epochs[std::size_t(e)].end(), idx.begin(), idx.end());
    }
  for (auto& e : epochs) {
    auto sorted = e;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());  // no row twice in an epoch
    for (long i : sorted) CHECK((i >= 0 && i < 10));
  }
  CHECK(epochs[0] != epochs[1]);  // a new order each epoch
  CHECK(s.epoch() == doctest::Approx(2.0));
  // Resume: a sampler moved to the position continues with the same batches; another seed differs.
  data::BatchSampler r(10, 3, data::Sampling::epochs, 7);
  r.seek(4);
  data::BatchSampler fresh(10, 3, data::Sampling::epochs, 7), other(10, 3, data::Sampling::epochs, 8);
  for (int k = 0; k < 4; ++k) fresh.next();
  CHECK(r.next() == fresh.next());
  CHECK(other.batch_at(0) != fresh.batch_at(0));
  // Without drop_last the epoch ends with the short batch and covers every row.
  data::BatchSampler all(10, 3, data::Sampling::epochs, 7, false);
  CHECK(all.batches_per_epoch() == 4);
  std::vector<long> seen;
  for (int k = 0; k < 4; ++k) {
    const auto idx = all.next();
    seen.insert(seen.end(), idx.begin(), idx.end());
  }
  CHECK(all.batch_at(3).size() == 1);
  std::sort(seen.begin(), seen.end());
  for (long i = 0; i < 10; ++i) CHECK(seen[std::size_t(i)] == i);
}

TEST_CASE("BatchSampler with replacement draws uniform rows, deterministic per seed and batch number") {
  data::BatchSampler s(5, 1000, data::Sampling::with_replacement, 3);
  const auto idx = s.next();
  std::vector<long> count(5);
  for (long i : idx) ++count[std::size_t(i)];
  for (long c : count) CHECK((c > 150 && c < 250));  // ~200 each
  data::BatchSampler t(5, 1000, data::Sampling::with_replacement, 3);
  CHECK(t.next() == idx);
  CHECK(t.next() != idx);
  // take_rows gathers a batch of data and of labels in the sampler's order.
  HostMatrix<double> x(4, 2);
  x << 0, 1, 2, 3, 4, 5, 6, 7;
  const std::vector<int> labels{10, 11, 12, 13};
  const HostMatrix<double> xb = data::take_rows(x, {3, 1, 3});
  CHECK(xb(0, 1) == 7.0);
  CHECK(xb(1, 0) == 2.0);
  CHECK(data::take_rows(labels, {3, 1, 3}) == std::vector<int>{13, 11, 13});
  CHECK(message<shape_error>([&] { data::take_rows(x, {4}); }).find("row 4 is outside a 4-row matrix") !=
        std::string::npos);
  CHECK(message<usage_error>([&] { data::BatchSampler(3, 4, data::Sampling::epochs, 1); })
            .find("needs at least 4 rows, the data set has 3") != std::string::npos);
}
