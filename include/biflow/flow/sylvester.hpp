#pragma once
// Sylvester flows (van den Berg et al. 2018): y = x + Q·R·tanh(R̃·Qᵀ·x + b), a planar flow with an M-unit bottleneck.
// Q (D × M) has orthonormal columns, R and R̃ (M × M) are upper triangular, and by Sylvester's determinant identity
//   log|det| = Σₘ log|1 + (1 − tanh²(aₘ))·R̃ₘₘRₘₘ|.
// Invertibility needs RₘₘR̃ₘₘ > −1 (tanh' ≤ 1): both diagonals pass through tanh, so the product is in (−1, 1).
// The Q kinds: sylvester::householder — the first M columns of K Householder reflections (M ≤ D, learned);
// sylvester::triangular — Q = I or the reversing permutation (M = D, fixed; alternate `flip` between layers).
// No closed-form inverse: `has_inverse = false`.
#include <cmath>
#include <optional>
#include <vector>

#include "householder.hpp"
#include "planar.hpp"

namespace biflow {

namespace sylvester {
struct Householder {};
struct Triangular {};
inline constexpr Householder householder{};
inline constexpr Triangular triangular{};
}  // namespace sylvester

namespace fn {
/// R = R̂ above the diagonal, tanh(R̂) on it, 0 below (U: strictly-upper mask, I: identity mask).
struct SylvesterR {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T r, T U, T I) const { return r * U + std::tanh(r) * I; }
};
/// Its backward: dR̂ = dR·U + dR·(1 − tanh²R̂)·I.
struct SylvesterRGrad {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T g, T r, T U, T I) const {
    const T t = std::tanh(r);
    return g * U + g * (T(1) - t * t) * I;
  }
};
struct Mul3 {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T c) const { return a * b * c; }
};
/// a + I·d·o: adds the diagonal terms (I identity mask, d a broadcast row, o the other factor).
struct AddDiag {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T I, T d, T o) const { return a + I * d * o; }
};
}  // namespace fn

template <Backend B, class QKind = sylvester::Householder>
class Sylvester : public FlowLayerBase<Sylvester<B, QKind>, B> {
  static_assert(std::is_same_v<QKind, sylvester::Householder> || std::is_same_v<QKind, sylvester::Triangular>,
                "Sylvester<B, QKind>: QKind is sylvester::Householder or sylvester::Triangular");
  static constexpr bool kHouseholder = std::is_same_v<QKind, sylvester::Householder>;

 public:
  static constexpr const char* layer_name = "Sylvester";
  static constexpr bool has_inverse = false;
  using T = typename B::scalar;
  struct Context {
    Tensor<B> x, t;  // input, tanh(x·Q·R̃ᵀ + b)
    Tensor<B> q;     // Q (D × M) as used
    typename biflow::Householder<B>::Context qctx;
  };
  Sylvester() = default;
  /// Householder kind: bottleneck M ≤ D, K reflections build Q.
  Sylvester(long d, long m, long reflections, Rng& rng, sylvester::Householder = {})
    requires kHouseholder
      : d_(d), m_(m), hh_(d, reflections, rng) {
    if (m <= 0 || m > d) throw usage_error(detail::cat("Sylvester: bottleneck M must be in [1, D] = [1, ", d, "], got ", m));
    init(rng);
  }
  /// Triangular kind: Q = I, or the reversing permutation when flip (M = D).
  Sylvester(long d, bool flip, Rng& rng, sylvester::Triangular = {})
    requires(!kHouseholder)
      : d_(d), m_(d), flip_(flip) {
    if (d <= 0) throw usage_error(detail::cat("Sylvester: features must be positive, got ", d));
    HostMatrix<T> q = HostMatrix<T>::Zero(d, d);
    for (long i = 0; i < d; ++i) q(i, flip ? d - 1 - i : i) = T(1);
    q_fixed_ = from_host<B>(q);
    init(rng);
  }
  long features() const { return d_; }
  long cond_features() const { return 0; }
  long bottleneck() const { return m_; }
  bool flipped() const { return flip_; }

  /// Q (D × M); for the Householder kind, qctx receives what its backward needs.
  Tensor<B> q_matrix(typename biflow::Householder<B>::Context* qctx) const {
    if constexpr (kHouseholder) {
      const Tensor<B> eye = from_host<B>(HostMatrix<T>(HostMatrix<T>::Identity(d_, d_)));
      const Tensor<B> full = qctx ? hh_.forward(eye, *qctx, {}, logdet::none).y : hh_.forward(eye, {}, logdet::none).y;
      return m_ == d_ ? full : slice_cols(full, 0, m_);
    } else {
      return q_fixed_;
    }
  }
  /// R and R̃ (M × M, upper triangular with tanh diagonals) and the diagonal products RₘₘR̃ₘₘ (1 × M).
  struct Triangles {
    Tensor<B> r, rt, diag;
  };
  Triangles triangles() const {
    Triangles tr{zip(fn::SylvesterR{}, r_raw.value, upper_, eye_), zip(fn::SylvesterR{}, rt_raw.value, upper_, eye_), {}};
    tr.diag = reshaped(row_sum(zip(fn::Mul3{}, tr.r, tr.rt, eye_)), 1, m_);
    return tr;
  }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, bool want_logdet) const {
    Tensor<B> q = q_matrix(ctx ? &ctx->qctx : nullptr);
    const Triangles tr = triangles();
    const Tensor<B> a = matmul(x, false, matmul(q, false, tr.rt, true), false);  // x·Q·R̃ᵀ
    Tensor<B> t = zip(fn::TanhAdd{}, a, b.value);
    Tensor<B> y = matmul(t, false, matmul(q, false, tr.r, false), true);         // tanh(·)·(QR)ᵀ
    map(y, fn::Add{}, y, x);
    FlowOut<B> out{std::move(y), want_logdet ? row_sum(zip(fn::TanhUnitLogdet{}, t, tr.diag)) : Tensor<B>{}};
    if (ctx) {
      ctx->x = x;
      ctx->t = std::move(t);
      ctx->q = std::move(q);
    }
    return out;
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("Sylvester.backward: dy", dy, ctx.x.rows(), d_);
    require_shape("Sylvester.backward: dlogdet", dlogdet, ctx.x.rows(), 1);
    const Triangles tr = triangles();
    const Tensor<B>& q = ctx.q;
    const Tensor<B> A = matmul(q, false, tr.r, false);     // D × M
    const Tensor<B> Bm = matmul(tr.rt, false, q, true);    // M × D
    // ∂loss/∂a (N × M) through y = x + t·Aᵀ and the log-det.
    const Tensor<B> ga = zip(fn::TanhUnitGrad{}, matmul(dy, false, A, false), ctx.t, tr.diag, dlogdet);
    const bool params = wants_grad(mode, r_raw) || wants_grad(mode, rt_raw) || wants_grad(mode, b) || q_trainable(mode);
    if (params) {
      const Tensor<B> dA = matmul(dy, true, ctx.t, false);   // D × M
      const Tensor<B> dBm = matmul(ga, true, ctx.x, false);  // M × D
      Tensor<B> ddiag;                                       // 1 × M
      col_sum(zip(fn::TanhUnitDd{}, ctx.t, tr.diag, dlogdet), ddiag);
      // A = Q·R, B = R̃·Qᵀ, diag = RₘₘR̃ₘₘ.
      const Tensor<B> dR = zip(fn::AddDiag{}, matmul(q, true, dA, false), eye_, ddiag, tr.rt);
      const Tensor<B> dRt = zip(fn::AddDiag{}, matmul(dBm, false, q, false), eye_, ddiag, tr.r);
      if (wants_grad(mode, r_raw))
        map(r_raw.grad, fn::Add{}, r_raw.grad, zip(fn::SylvesterRGrad{}, dR, r_raw.value, upper_, eye_));
      if (wants_grad(mode, rt_raw))
        map(rt_raw.grad, fn::Add{}, rt_raw.grad, zip(fn::SylvesterRGrad{}, dRt, rt_raw.value, upper_, eye_));
      if (wants_grad(mode, b)) col_sum(ga, b.grad, T(1));  // accumulates
      if constexpr (kHouseholder) {
        if (q_trainable(mode)) {
          Tensor<B> dq = matmul(dA, false, tr.r, true);  // D × M
          add_inplace(dq, matmul(dBm, true, tr.rt, false));
          if (m_ < d_) dq = concat_cols(dq, Tensor<B>(d_, d_ - m_));
          hh_.backward(ctx.qctx, dq, Tensor<B>(d_, 1), GradMode::params_only);  // Q's input (I) is constant
        }
      }
    }
    if (!wants_input_grad(mode)) return {};
    Tensor<B> dx = matmul(ga, false, Bm, false);
    map(dx, fn::Add{}, dx, dy);
    return dx;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "r"), r_raw);
    v(join_name(prefix, "r_tilde"), rt_raw);
    v(join_name(prefix, "b"), b);
    if constexpr (kHouseholder) hh_.visit_parameters(v, join_name(prefix, "q"));
  }
  Parameter<B> r_raw, rt_raw, b;

 private:
  bool q_trainable(GradMode mode) const {
    if constexpr (kHouseholder) {
      for (const auto& p : hh_.v)
        if (wants_grad(mode, p)) return true;
    }
    return false;
  }
  void init(Rng& rng) {
    r_raw = Parameter<B>(Tensor<B>(m_, m_));
    rt_raw = Parameter<B>(Tensor<B>(m_, m_));
    b = Parameter<B>(Tensor<B>(1, m_));
    // Small random triangles (entries below the diagonal are masked out, so their values never matter).
    fill_normal(r_raw.value, rng, T(0), T(0.3 / std::sqrt(double(m_))));
    fill_normal(rt_raw.value, rng, T(0), T(0.3 / std::sqrt(double(m_))));
    HostMatrix<T> up = HostMatrix<T>::Zero(m_, m_), id = HostMatrix<T>::Identity(m_, m_);
    for (long i = 0; i < m_; ++i)
      for (long j = i + 1; j < m_; ++j) up(i, j) = T(1);
    upper_ = from_host<B>(up);
    eye_ = from_host<B>(id);
  }
  long d_ = 0, m_ = 0;
  bool flip_ = false;
  biflow::Householder<B> hh_;
  Tensor<B> q_fixed_, upper_, eye_;
};

}  // namespace biflow
