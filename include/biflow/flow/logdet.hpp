#pragma once
// Log-det policies: how a flow layer's log|det ∂y/∂x| is obtained. Chosen per call, at compile time:
//   logdet::Analytic   - the layer's closed form (training, density evaluation)
//   logdet::None       - not computed (sampling-only paths; FlowOut::logdet is left empty)
//   logdet::BruteForce - the full Jacobian built column by column from backward, then its slogdet
//                        (verification only: O(D) backward passes and an O(D^3) determinant per sample)
//   logdet::Hutchinson<K>, logdet::RussianRoulette<K> - stochastic estimates for layers whose log-det has no closed
//                        form (residual flows; continuous-time flows' trace integrals next): they carry their state
//                        (the Rng, K probe vectors per sample, the series terms) and say whether the estimate is
//                        unbiased. A layer with a closed form answers them with its exact value (an unbiased
//                        estimate of itself, with zero variance).
// A policy is any type with `static constexpr bool compute`; layers that use the policy object itself (Residual,
// compositions) take it as the last argument of forward_impl / inverse_impl, the others get `compute` as a bool.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../core/rng.hpp"

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

/// Hutchinson estimate of the log-det power series log det(I + J) = Σ_{k≥1} (−1)^{k+1} tr(Jᵏ)/k, truncated after
/// `terms` terms, with K Gaussian probe vectors per sample (tr(A) ≈ vᵀAv). Biased by the truncation (the error falls
/// as Lip(g)^terms); the variance falls as 1/K.
template <int K = 1>
struct Hutchinson {
  static_assert(K >= 1, "logdet::Hutchinson<K>: K (probe vectors per sample) must be at least 1");
  static constexpr bool compute = true;
  static constexpr bool stochastic = true;
  static constexpr bool unbiased = false;
  static constexpr int probes = K;
  Rng* rng = nullptr;  ///< draws the probes (required)
  long terms = 10;
  long draw_terms() const { return terms; }
  static double weight(long) { return 1.0; }
};
/// Russian-roulette estimate (Chen et al. 2019): n = min_terms + N terms with P(N ≥ j) = q^j (drawn once per call),
/// term k weighted by 1/P(n ≥ k) = q^-(k − min_terms) beyond min_terms: unbiased for the infinite series — as long as
/// n stays below max_terms, a cap against rare long draws (P(n > max_terms) = q^(max_terms − min_terms)).
template <int K = 1>
struct RussianRoulette {
  static_assert(K >= 1, "logdet::RussianRoulette<K>: K (probe vectors per sample) must be at least 1");
  static constexpr bool compute = true;
  static constexpr bool stochastic = true;
  static constexpr bool unbiased = true;
  static constexpr int probes = K;
  Rng* rng = nullptr;
  long min_terms = 2;
  double q = 0.5;  ///< continuation probability
  long max_terms = 64;
  long draw_terms() const {
    long n = min_terms;
    while (n < max_terms && rng->uniform() < q) ++n;
    return n;
  }
  double weight(long k) const { return k <= min_terms ? 1.0 : std::pow(q, -double(k - min_terms)); }
};
template <int K = 1>
Hutchinson<K> hutchinson(Rng& rng, long terms = 10) {
  return {&rng, terms};
}
template <int K = 1>
RussianRoulette<K> russian_roulette(Rng& rng, long min_terms = 2, double q = 0.5, long max_terms = 64) {
  return {&rng, min_terms, q, max_terms};
}
}  // namespace logdet

/// Any type with `static constexpr bool compute` (the built-in ones above, or your own).
template <class P>
concept LogDetPolicy = !std::is_same_v<P, bool> && requires { { P::compute } -> std::convertible_to<bool>; };

/// Whether P is a stochastic estimate (Hutchinson, RussianRoulette) and whether that estimate is unbiased.
template <LogDetPolicy P>
inline constexpr bool is_stochastic_policy = [] {
  if constexpr (requires { P::stochastic; }) return bool(P::stochastic);
  else return false;
}();
template <LogDetPolicy P>
inline constexpr bool is_unbiased_policy = [] {
  if constexpr (requires { P::unbiased; }) return bool(P::unbiased);
  else return true;  // exact
}();

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
