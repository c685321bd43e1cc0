#pragma once
// Log-det policies: how a flow layer's log|det ∂y/∂x| is obtained. Chosen per call, at compile time:
//   logdet::Analytic   - the layer's closed form (training, density evaluation)
//   logdet::None       - not computed (sampling-only paths; FlowOut::logdet is left empty)
//   logdet::BruteForce - the full Jacobian built column by column from backward, then its slogdet
//                        (verification only: O(D) backward passes and an O(D^3) determinant per sample)
#include <cmath>
#include <type_traits>

#include "../backend/host_linalg.hpp"
#include "../backend/ops.hpp"
#include "../nn/parameter.hpp"  // GradMode

namespace biflow {
namespace logdet {
struct Analytic {
  static constexpr bool compute = true;
};
struct None {
  static constexpr bool compute = false;
};
struct BruteForce {
  static constexpr bool compute = true;
};
inline constexpr Analytic analytic{};
inline constexpr None none{};
inline constexpr BruteForce brute_force{};
}  // namespace logdet

template <class P>
concept LogDetPolicy = std::is_same_v<P, logdet::Analytic> || std::is_same_v<P, logdet::None> ||
                       std::is_same_v<P, logdet::BruteForce>;

/// Output of a flow layer: y and the per-sample log-det (rows x 1; empty under logdet::None).
template <class B>
struct FlowOut {
  Tensor<B> y;
  Tensor<B> logdet;
};

/// log|det| of each sample's Jacobian (stacked (rows·d) x d on the host): backend/host_linalg.hpp.
using linalg::slogdet_rows;

/// Per-sample Jacobians ∂y/∂x of a flow layer at x, via D input-only backward passes (the layer is untouched).
/// (rows*D) x D on host.
template <class L, class B>
HostMatrix<typename B::scalar> jacobian_by_backward(const L& layer, const Tensor<B>& x, const Tensor<B>& cond) {
  using T = typename B::scalar;
  // Under GradMode::input_only the contract forbids a backward to write to its layer, so a const layer is safe.
  L& tmp = const_cast<L&>(layer);
  typename L::Context ctx;
  tmp.forward(x, ctx, cond, logdet::analytic);
  const long R = x.rows(), D = x.cols();
  HostMatrix<T> jac(R * D, D);
  const Tensor<B> dl(R, 1);
  for (long d = 0; d < D; ++d) {
    HostMatrix<T> e = HostMatrix<T>::Zero(R, D);
    e.col(d).setOnes();
    const HostMatrix<T> dx = to_host(tmp.backward(ctx, from_host<B>(e), dl, GradMode::input_only));
    for (long b = 0; b < R; ++b) jac.row(b * D + d) = dx.row(b);
  }
  return jac;
}

}  // namespace biflow
