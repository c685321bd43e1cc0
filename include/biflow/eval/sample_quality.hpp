#pragma once
// Sample quality that can tell a copy from a sample: one protocol, applied the same way to a model's samples and
// to reference rows (copied training data, held-out real data, class mean + noise).
//
// Each of R replicates splits the held-out real data at random into a reference half (n_ref rows) and a "real"
// half (n rows), and draws n rows without replacement from every candidate set. Per replicate, in the
// evaluator's feature space:
//   - Fréchet distance (biased by n: comparable only at equal n, which every row here has),
//   - kernel distance (KID, unbiased),
//   - k-NN precision and recall against the reference half,
// and in the novelty space (e.g. pixels): novelty = median nearest-training-row distance of the n candidate rows
// over that of the reference half. Rows report the median over replicates and a percentile interval. The splits
// depend only on the seed and the held-out data, so rows of one suite are paired (same splits).
// Features are divided by one scale s (RMS feature of the held-out rows, s² = mean |f|² / f) for every row alike,
// so that the cubic kernel of KID sees a·b/f ≈ 1 whatever the feature network's output range (FD scales by 1/s²).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/rng.hpp"
#include "frechet.hpp"
#include "kid.hpp"
#include "knn.hpp"
#include "precision_recall.hpp"

namespace biflow {

/// A statistic over resampling replicates: median and the central `level` percentile interval.
struct Interval {
  double median = 0, lo = 0, hi = 0;
};

inline Interval summarize(std::vector<double> v, double level = 0.95) {
  if (v.empty()) throw shape_error("summarize: no values");
  std::sort(v.begin(), v.end());
  auto q = [&](double p) {  // linear interpolation between order statistics
    const double pos = p * double(v.size() - 1);
    const std::size_t i = std::size_t(pos);
    const double f = pos - double(i);
    return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
  };
  const double tail = (1.0 - level) / 2.0;
  return {q(0.5), q(tail), q(1.0 - tail)};
}

struct QualityOptions {
  long replicates = 100;    ///< random splits / subsets
  std::uint64_t seed = 0;   ///< the splits are a function of this seed only
  long k = 3;               ///< neighbours for precision/recall radii
  double level = 0.95;      ///< interval coverage
};

/// One row of a quality table.
struct QualityRow {
  long n = 0, n_reference = 0, replicates = 0;  ///< rows per candidate subset, reference rows, replicates
  Interval fd, kid, precision, recall, novelty;
};

class QualitySuite {
 public:
  /// heldout_features: evaluator features of real data no model was trained on (n_heldout x f);
  /// heldout_points / train_points: the same held-out rows and the training rows in the novelty space
  /// (e.g. pixels; rows of heldout_points match rows of heldout_features).
  QualitySuite(HostMatrix<double> heldout_features, HostMatrix<double> heldout_points, HostMatrix<double> train_points,
               QualityOptions o = {})
      : hf_(std::move(heldout_features)), hp_(std::move(heldout_points)), tp_(std::move(train_points)), o_(o) {
    if (hf_.rows() != hp_.rows())
      throw shape_error(detail::cat("QualitySuite: ", hf_.rows(), " held-out feature rows but ", hp_.rows(),
                                    " held-out points"));
    if (hp_.cols() != tp_.cols())
      throw shape_error(detail::cat("QualitySuite: held-out points have ", hp_.cols(), " columns, training points ",
                                    tp_.cols()));
    if (hf_.rows() < 2 * (o_.k + 2))
      throw shape_error(detail::cat("QualitySuite: need at least ", 2 * (o_.k + 2), " held-out rows, got ",
                                    hf_.rows()));
    if (o_.replicates < 1) throw usage_error("QualitySuite: replicates must be >= 1");
    const double ms = hf_.squaredNorm() / double(hf_.size());
    if (!(ms > 0) || !std::isfinite(ms))
      throw numeric_error(detail::cat("QualitySuite: held-out features have mean square ", ms, " (all zero or not finite)"));
    scale_ = 1.0 / std::sqrt(ms);
    hf_ *= scale_;
    const Eigen::VectorXd h = nearest_distances(hp_, tp_);
    heldout_nn_.assign(h.data(), h.data() + h.size());
  }

  /// Rows each candidate contributes per replicate (the "real" half of the held-out data).
  long n() const { return hf_.rows() / 2; }
  long n_reference() const { return hf_.rows() - n(); }
  const QualityOptions& options() const { return o_; }
  /// The factor applied to every feature vector (1 / RMS of the held-out features).
  double feature_scale() const { return scale_; }

  /// A candidate set: features (for the distances) and points (for novelty), same rows, at least n() of them.
  /// (evaluate and heldout_split are templates so that the statistics are compiled only where they are used.)
  template <class = void>
  QualityRow evaluate(const HostMatrix<double>& features, const HostMatrix<double>& points) const {
    if (features.rows() != points.rows())
      throw shape_error(detail::cat("QualitySuite.evaluate: ", features.rows(), " feature rows but ", points.rows(),
                                    " points"));
    if (features.cols() != hf_.cols() || points.cols() != tp_.cols())
      throw shape_error(detail::cat("QualitySuite.evaluate: expected ", hf_.cols(), " features and ", tp_.cols(),
                                    " point columns, got ", features.cols(), " and ", points.cols()));
    if (features.rows() < n())
      throw shape_error(detail::cat("QualitySuite.evaluate: need at least n = ", n(), " candidate rows, got ",
                                    features.rows()));
    const Eigen::VectorXd c = nearest_distances(points, tp_);
    if (!features.allFinite() || !points.allFinite())
      throw numeric_error(detail::cat("QualitySuite.evaluate: candidate ", features.allFinite() ? "points" : "features",
                                      " are not finite (NaN or Inf samples)"));
    return run([&](long b, std::vector<long>&) { return subset(features.rows(), b); }, HostMatrix<double>(scale_ * features),
               std::vector<double>(c.data(), c.data() + c.size()));
  }
  /// The real-data floor: the held-out half not used as reference, judged like a candidate.
  template <class = void>
  QualityRow heldout_split() const {
    return run([&](long, std::vector<long>& perm) { return std::vector<long>(perm.begin() + n_reference(), perm.end()); },
               hf_, heldout_nn_);
  }

 private:
  /// Replicate b's permutation of the held-out rows (first n_reference() = reference half).
  std::vector<long> split(long b) const { return shuffled(hf_.rows(), hf_.rows(), rng_detail::hash2(o_.seed, 2 * b)); }
  /// Replicate b's n() rows of a candidate set with `rows` rows.
  std::vector<long> subset(long rows, long b) const { return shuffled(rows, n(), rng_detail::hash2(o_.seed, 2 * b + 1)); }
  static std::vector<long> shuffled(long rows, long take, std::uint64_t seed) {
    Rng r(seed);
    return choose_distinct(rows, take, r);
  }
  static HostMatrix<double> rows_of(const HostMatrix<double>& m, const std::vector<long>& idx) {
    HostMatrix<double> r(long(idx.size()), m.cols());
    for (std::size_t i = 0; i < idx.size(); ++i) r.row(long(i)) = m.row(idx[i]);
    return r;
  }
  template <class Pick>
  QualityRow run(Pick pick, const HostMatrix<double>& cand, const std::vector<double>& cand_nn) const {
    std::vector<double> fd, kid, pr, rc, nov;
    for (long b = 0; b < o_.replicates; ++b) {
      std::vector<long> perm = split(b);
      const std::vector<long> ref(perm.begin(), perm.begin() + n_reference());
      const std::vector<long> idx = pick(b, perm);
      const HostMatrix<double> r = rows_of(hf_, ref), c = rows_of(cand, idx);
      fd.push_back(frechet_distance(gaussian_fit(r), gaussian_fit(c)));
      kid.push_back(kernel_distance(c, r));
      const PrecisionRecall p = precision_recall(r, c, o_.k);
      pr.push_back(p.precision);
      rc.push_back(p.recall);
      std::vector<double> cn, rn;
      for (long i : idx) cn.push_back(cand_nn[std::size_t(i)]);
      for (long i : ref) rn.push_back(heldout_nn_[std::size_t(i)]);
      const double rm = median(rn);
      if (!(rm > 0)) throw numeric_error("QualitySuite: held-out rows lie on training rows (median distance 0)");
      nov.push_back(median(cn) / rm);
    }
    return {n(), n_reference(), o_.replicates, summarize(fd, o_.level), summarize(kid, o_.level),
            summarize(pr, o_.level), summarize(rc, o_.level), summarize(nov, o_.level)};
  }

  HostMatrix<double> hf_, hp_, tp_;
  QualityOptions o_;
  std::vector<double> heldout_nn_;
  double scale_ = 1;
};

}  // namespace biflow
