#pragma once
// Per-feature standardisation u = (x − mean) / std, with the log-Jacobian needed to report densities
// in the original units: log p_x(x) = log p_u(u) + log_abs_det, log_abs_det = −Σ log std.
#include "../core/config.hpp"  // before Eigen
#include <Eigen/Cholesky>
#include <cmath>
#include <numbers>

#include "../backend/tensor.hpp"

namespace biflow::data {

struct Standardizer {
  Eigen::RowVectorXd mean, stddev;

  static Standardizer fit(const HostMatrix<double>& x) {
    if (x.rows() < 2) throw shape_error(detail::cat("Standardizer.fit: need at least 2 rows, got ", x.rows()));
    Standardizer s;
    s.mean = x.colwise().mean();
    s.stddev = ((x.rowwise() - s.mean).array().square().colwise().sum() / double(x.rows() - 1)).sqrt();
    for (long j = 0; j < s.stddev.size(); ++j)
      if (!(s.stddev(j) > 1e-12)) s.stddev(j) = 1.0;  // constant column: leave it centred, unscaled
    return s;
  }
  HostMatrix<double> transform(const HostMatrix<double>& x) const {
    require_dim("Standardizer.transform", "columns", mean.size(), x.cols());
    return ((x.rowwise() - mean).array().rowwise() / stddev.array()).matrix();
  }
  HostMatrix<double> inverse(const HostMatrix<double>& u) const {
    require_dim("Standardizer.inverse", "columns", mean.size(), u.cols());
    return ((u.array().rowwise() * stddev.array()).rowwise() + mean.array()).matrix();
  }
  double log_abs_det() const { return -stddev.array().log().sum(); }
};

/// Mean test NLL (nats/sample) of a full-covariance Gaussian fitted to train: the baseline a flow must beat.
/// (A template, so that the Cholesky is instantiated only where called.)
template <class = void>
double gaussian_nll(const HostMatrix<double>& train, const HostMatrix<double>& test) {
  const Eigen::RowVectorXd mu = train.colwise().mean();
  const Eigen::MatrixXd c = train.rowwise() - mu;
  const Eigen::MatrixXd cov = (c.transpose() * c) / double(train.rows());
  const Eigen::LLT<Eigen::MatrixXd> llt(cov);
  if (llt.info() != Eigen::Success) throw numeric_error("gaussian_nll: covariance is not positive definite");
  const double logdet = 2 * llt.matrixL().toDenseMatrix().diagonal().array().log().sum();
  const Eigen::MatrixXd d = (test.rowwise() - mu).transpose();
  const Eigen::MatrixXd sol = llt.solve(d);
  const double quad = (d.array() * sol.array()).sum() / double(test.rows());
  return 0.5 * (quad + logdet + double(train.cols()) * std::log(2 * std::numbers::pi));
}

}  // namespace biflow::data
