#pragma once
// Fréchet distance between Gaussian fits of two feature sets (the FID formula):
//   |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})
// Host-side evaluation math on Eigen (double precision), like the backends' own host helpers.
#include "../core/config.hpp"  // before Eigen (threading settings)

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <concepts>

#include "../backend/tensor.hpp"
#include "../core/errors.hpp"

namespace biflow {

struct GaussianFit {
  Eigen::VectorXd mean;
  Eigen::MatrixXd cov;  ///< unbiased (n − 1) covariance
};

/// Mean and covariance of the rows of x (n x d, n >= 2).
template <class T>
GaussianFit gaussian_fit(const HostMatrix<T>& x) {
  if (x.rows() < 2) throw shape_error(detail::cat("gaussian_fit: need at least 2 rows, got ", x.rows()));
  const Eigen::MatrixXd m = x.template cast<double>();
  GaussianFit g;
  g.mean = m.colwise().mean().transpose();
  const Eigen::MatrixXd c = m.rowwise() - g.mean.transpose();
  g.cov = (c.transpose() * c) / double(m.rows() - 1);
  return g;
}

/// (A template, instantiated where called: the eigen-solvers would otherwise cost every including file.)
template <class Fit>
  requires std::same_as<Fit, GaussianFit>
double frechet_distance(const Fit& a, const Fit& b) {
  if (a.mean.size() != b.mean.size())
    throw shape_error(detail::cat("frechet_distance: feature sizes differ: ", a.mean.size(), " vs ", b.mean.size()));
  // sqrt(Σ₁) via its eigen-decomposition; then the eigenvalues of the symmetric PSD Σ₁^{1/2} Σ₂ Σ₁^{1/2}.
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> ea(a.cov);
  const Eigen::VectorXd la = ea.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  const Eigen::MatrixXd sa = ea.eigenvectors() * la.asDiagonal() * ea.eigenvectors().transpose();
  const Eigen::MatrixXd m = sa * b.cov * sa;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> em(0.5 * (m + m.transpose()), Eigen::EigenvaluesOnly);
  const double tr_sqrt = em.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  // >= 0 in exact arithmetic; identical inputs can round to a tiny negative number.
  return std::max(0.0, (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() - 2.0 * tr_sqrt);
}

template <class T>
double frechet_distance(const HostMatrix<T>& a, const HostMatrix<T>& b) {
  return frechet_distance(gaussian_fit(a), gaussian_fit(b));
}

}  // namespace biflow
