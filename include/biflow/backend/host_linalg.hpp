#pragma once
// Host linear algebra that layers need outside the training path (verification and initialisation), kept behind
// backend/ so that layers never name Eigen: per-sample log|det| of stacked Jacobians (logdet::BruteForce and the
// checker) and the LU factors of a random rotation (LULinear's initialisation). All in double on the host.
#include "../core/config.hpp"  // before Eigen
#include <Eigen/Dense>
#include <cmath>

#include "tensor.hpp"

namespace biflow::linalg {

/// log|det| of each sample's Jacobian, the per-sample matrices J[b] (d x d) stacked: jac is (rows·d) x d.
/// Returns rows x 1.
template <class T>
HostMatrix<T> slogdet_rows(const HostMatrix<T>& jac, long rows, long d) {
  HostMatrix<T> out(rows, 1);
  for (long b = 0; b < rows; ++b) {
    const Eigen::MatrixXd J = jac.block(b * d, 0, d, d).template cast<double>();
    const Eigen::FullPivLU<Eigen::MatrixXd> lu(J);
    const auto& m = lu.matrixLU();
    double s = 0;
    for (long i = 0; i < d; ++i) s += std::log(std::abs(m(i, i)));
    out(b, 0) = static_cast<T>(s);
  }
  return out;
}

/// log|det m| and m⁻¹ of one square matrix (double; partial-pivot LU). A template for the same compile-time reason
/// as rotation_lu below.
struct LogDetInverse {
  double logabsdet = 0;
  HostMatrix<double> inverse;
};
template <class = void>
LogDetInverse logdet_and_inverse(const HostMatrix<double>& m) {
  const Eigen::PartialPivLU<Eigen::MatrixXd> lu{Eigen::MatrixXd(m)};
  double s = 0;
  for (long i = 0; i < m.rows(); ++i) s += std::log(std::abs(lu.matrixLU()(i, i)));
  return {s, HostMatrix<double>(lu.inverse())};
}

/// Q = P L U with Q the orthogonal factor of g's QR (a random rotation when g is Gaussian): returns the packed LU
/// matrix (L strictly below the diagonal, unit diagonal implied; U on and above it) and the permutation Pᵀ's
/// dense matrix, so that Q = P·L·U with P = perm.
struct RotationLU {
  HostMatrix<double> lu, perm;
};
/// (A template so that the QR and LU are instantiated only where called: as an inline function they cost every
/// translation unit that includes a flow layer ~8 s of compile time.)
template <class = void>
RotationLU rotation_lu(const HostMatrix<double>& g) {
  const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(Eigen::MatrixXd(g)).householderQ();
  const Eigen::PartialPivLU<Eigen::MatrixXd> lu(q);  // P q = L U  =>  q = Pᵀ L U
  return {lu.matrixLU(), lu.permutationP().transpose().toDenseMatrix().cast<double>()};
}

}  // namespace biflow::linalg
