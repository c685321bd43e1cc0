#pragma once
// Neural spline flows (Durkan et al. 2019): a monotonic rational-quadratic spline per dimension on [−B, B] with
// K bins, identity (linear tails) outside; the bins' widths, heights and the K − 1 interior knot derivatives come
// from a conditioner. SplineCoupling: the conditioner reads the kept dimensions (one pass both ways).
// SplineAutoregressive: a MADE reads x_<i (density in one pass, sampling in D).
//
// Per element the conditioner emits P = 3K − 1 raw numbers [widths K | heights K | derivatives K − 1]:
//   w = m_w + (1 − K m_w)·softmax(raw widths), the same for heights; knots X_0 = −B, X_k = −B + 2B Σ_{j<k} w_j,
//   X_K = B; derivatives D_0 = D_K = 1 (the tails' slope), D_k = m_d + softplus(raw + c) inside, with c chosen so
//   that raw = 0 gives D_k = 1: all-zero raw parameters are the identity (a zeroed conditioner starts there).
//   In bin k, with ξ = (x − X_k)/W_k, s = H_k/W_k, a = ξ(1 − ξ):
//   y = Y_k + H_k (s ξ² + D_k a) / (s + (D_k + D_{k+1} − 2s) a)
//   dy/dx = s² (D_{k+1} ξ² + 2 s a + D_k (1 − ξ)²) / (s + (D_k + D_{k+1} − 2s) a)²
// The inverse solves the quadratic for ξ in the stable form ξ = 2c / (−b − √(b² − 4ac)).
#include <cmath>
#include <vector>

#include "../nn/mlp.hpp"
#include "autoregressive.hpp"
#include "coupling.hpp"
#include "flow_layer.hpp"
#include "masks.hpp"

namespace biflow {

/// The spline's shape: K bins on [−bound, bound] and the minimum bin width, height (as fractions of 2·bound) and
/// knot derivative that keep it strictly monotonic and its inverse well conditioned.
struct SplineShape {
  long bins = 8;
  double bound = 5.0;  // zuko's default; data standardised to unit variance sit well inside
  double min_width = 1e-3, min_height = 1e-3, min_derivative = 1e-3;
  static constexpr long max_bins = 64;
  long params() const { return 3 * bins - 1; }
  void validate(const char* who) const {
    if (bins < 1 || bins > max_bins)
      throw usage_error(detail::cat(who, ": bins must be in [1, ", max_bins, "], got ", bins));
    if (!(bound > 0)) throw usage_error(detail::cat(who, ": bound must be positive, got ", bound));
    if (!(min_width > 0) || min_width * double(bins) >= 1 || !(min_height > 0) || min_height * double(bins) >= 1 ||
        !(min_derivative > 0))
      throw usage_error(detail::cat(who, ": min_width and min_height must be in (0, 1/bins) and min_derivative > 0 ",
                                    "(got ", min_width, ", ", min_height, ", ", min_derivative, " with ", bins,
                                    " bins)"));
  }
};

namespace spline_detail {
/// Knots and derivatives of one element's spline from its P raw parameters.
template <class T>
struct Knots {
  T x[SplineShape::max_bins + 1], y[SplineShape::max_bins + 1], d[SplineShape::max_bins + 1];
  T sw[SplineShape::max_bins], sh[SplineShape::max_bins];  // the softmaxes (for the backward)
};
template <class T>
BIFLOW_HOST_DEVICE inline void softmax(const T* u, long k, T* out) {
  T m = u[0];
  for (long j = 1; j < k; ++j) m = u[j] > m ? u[j] : m;
  T z = 0;
  for (long j = 0; j < k; ++j) z += (out[j] = std::exp(u[j] - m));
  for (long j = 0; j < k; ++j) out[j] /= z;
}
template <class T>
BIFLOW_HOST_DEVICE inline T softplus(T u) {
  return u > T(20) ? u : std::log1p(std::exp(u));
}
template <class T>
BIFLOW_HOST_DEVICE inline T sigmoid(T u) {
  return T(1) / (T(1) + std::exp(-u));
}
/// c with m_d + softplus(c) = 1.
template <class T>
BIFLOW_HOST_DEVICE inline T derivative_offset(T md) {
  return std::log(std::expm1(T(1) - md));
}
template <class T>
BIFLOW_HOST_DEVICE inline void knots(const T* p, long K, T B, T mw, T mh, T md, Knots<T>& k) {
  softmax(p, K, k.sw);
  softmax(p + K, K, k.sh);
  k.x[0] = -B;
  k.y[0] = -B;
  T cx = 0, cy = 0;
  for (long j = 0; j < K; ++j) {
    cx += mw + (T(1) - T(K) * mw) * k.sw[j];
    cy += mh + (T(1) - T(K) * mh) * k.sh[j];
    k.x[j + 1] = -B + T(2) * B * cx;
    k.y[j + 1] = -B + T(2) * B * cy;
  }
  k.x[K] = B;  // exactly, whatever the rounding of the sums
  k.y[K] = B;
  k.d[0] = k.d[K] = T(1);
  for (long j = 1; j < K; ++j) k.d[j] = md + softplus(p[2 * K + j - 1] + derivative_offset(md));
}
/// The bin holding v among knots c[0..K] (c[0] <= v < c[K]).
template <class T>
BIFLOW_HOST_DEVICE inline long bin(const T* c, long K, T v) {
  long lo = 0, hi = K;  // c[lo] <= v < c[hi]
  while (hi - lo > 1) {
    const long mid = (lo + hi) / 2;
    if (v >= c[mid]) lo = mid;
    else hi = mid;
  }
  return lo;
}
}  // namespace spline_detail

namespace fn {
/// m ? x : y (m is 0 or 1)
struct Blend {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T y, T x, T m) const { return m != T(0) ? x : y; }
};
/// Forward (or, with inverse = true, inverse) of the spline: y and the element's log |dy/dx| (of the direction
/// computed).
struct RqSpline {
  long K;
  double B, mw, mh, md;
  bool inverse = false;
  template <class T>
  BIFLOW_HOST_DEVICE void operator()(T v, const T* p, T& out, T& ld) const {
    const T Bt = T(B);
    if (!(v > -Bt && v < Bt)) {  // linear tails: the identity (NaN also passes through unchanged)
      out = v;
      ld = T(0);
      return;
    }
    spline_detail::Knots<T> k;
    spline_detail::knots(p, K, Bt, T(mw), T(mh), T(md), k);
    if (!inverse) {
      const long b = spline_detail::bin(k.x, K, v);
      const T W = k.x[b + 1] - k.x[b], H = k.y[b + 1] - k.y[b], s = H / W;
      const T xi = (v - k.x[b]) / W, a = xi * (T(1) - xi);
      const T den = s + (k.d[b] + k.d[b + 1] - T(2) * s) * a;
      out = k.y[b] + H * (s * xi * xi + k.d[b] * a) / den;
      const T n2 = k.d[b + 1] * xi * xi + T(2) * s * a + k.d[b] * (T(1) - xi) * (T(1) - xi);
      ld = T(2) * std::log(s) + std::log(n2) - T(2) * std::log(den);
    } else {
      const long b = spline_detail::bin(k.y, K, v);
      const T W = k.x[b + 1] - k.x[b], H = k.y[b + 1] - k.y[b], s = H / W;
      const T yr = v - k.y[b], delta = k.d[b] + k.d[b + 1] - T(2) * s;
      const T qa = H * (s - k.d[b]) + yr * delta, qb = H * k.d[b] - yr * delta, qc = -s * yr;
      T disc = qb * qb - T(4) * qa * qc;
      disc = disc > T(0) ? disc : T(0);
      T xi = T(2) * qc / (-qb - std::sqrt(disc));
      xi = xi < T(0) ? T(0) : (xi > T(1) ? T(1) : xi);
      out = k.x[b] + xi * W;
      const T a = xi * (T(1) - xi), den = s + delta * a;
      const T n2 = k.d[b + 1] * xi * xi + T(2) * s * a + k.d[b] * (T(1) - xi) * (T(1) - xi);
      ld = -(T(2) * std::log(s) + std::log(n2) - T(2) * std::log(den));
    }
  }
};

/// Backward of the forward spline: given gy = ∂L/∂y and gl = ∂L/∂(log-det) (the element's share of its row's
/// log-det), dx = ∂L/∂x and dp = ∂L/∂(raw parameters), through the softmaxes, the knot sums and the softplus.
struct RqSplineGrad {
  long K;
  double B, mw, mh, md;
  template <class T>
  BIFLOW_HOST_DEVICE void operator()(T v, const T* p, T gy, T gl, T& dx, T* dp) const {
    const long P = 3 * K - 1;
    for (long j = 0; j < P; ++j) dp[j] = T(0);
    const T Bt = T(B);
    if (!(v > -Bt && v < Bt)) {
      dx = gy;
      return;
    }
    spline_detail::Knots<T> k;
    spline_detail::knots(p, K, Bt, T(mw), T(mh), T(md), k);
    const long b = spline_detail::bin(k.x, K, v);
    const T W = k.x[b + 1] - k.x[b], H = k.y[b + 1] - k.y[b], s = H / W;
    const T Dk = k.d[b], Dk1 = k.d[b + 1];
    const T xi = (v - k.x[b]) / W, a = xi * (T(1) - xi), da = T(1) - T(2) * xi;
    const T delta = Dk + Dk1 - T(2) * s;
    const T den = s + delta * a, num = H * (s * xi * xi + Dk * a);
    const T n2 = Dk1 * xi * xi + T(2) * s * a + Dk * (T(1) - xi) * (T(1) - xi);
    // Partials of y and of l = log dy/dx in the local variables (ξ, s, D_k, D_{k+1}, H explicit, Y_k).
    const T den2 = den * den;
    const T dden_xi = delta * da, dden_s = T(1) - T(2) * a;
    const T y_xi = (H * (T(2) * s * xi + Dk * da) * den - num * dden_xi) / den2;
    const T y_s = (H * xi * xi * den - num * dden_s) / den2;
    const T y_dk = (H * a * den - num * a) / den2;
    const T y_dk1 = (-num * a) / den2;
    const T y_h = (s * xi * xi + Dk * a) / den;
    const T l_xi = (T(2) * Dk1 * xi + T(2) * s * da - T(2) * Dk * (T(1) - xi)) / n2 - T(2) * dden_xi / den;
    const T l_s = T(2) / s + T(2) * a / n2 - T(2) * dden_s / den;
    const T l_dk = (T(1) - xi) * (T(1) - xi) / n2 - T(2) * a / den;
    const T l_dk1 = xi * xi / n2 - T(2) * a / den;
    const T g_xi = gy * y_xi + gl * l_xi, g_s = gy * y_s + gl * l_s;
    const T g_dk = gy * y_dk + gl * l_dk, g_dk1 = gy * y_dk1 + gl * l_dk1;
    dx = g_xi / W;
    // Knot quantities: X_k, W_k (through ξ and s), Y_k, H_k (explicit and through s).
    const T g_X = -g_xi / W, g_W = -(g_xi * xi + g_s * s) / W, g_Y = gy, g_H = gy * y_h + g_s / W;
    // Normalised widths w_j: W_b = 2B w_b, X_b = −B + 2B Σ_{j<b} w_j (the last knot is fixed, but b < K).
    T gw[SplineShape::max_bins], gh[SplineShape::max_bins];
    for (long j = 0; j < K; ++j) {
      gw[j] = T(2) * Bt * ((j == b ? g_W : T(0)) + (j < b ? g_X : T(0)));
      gh[j] = T(2) * Bt * ((j == b ? g_H : T(0)) + (j < b ? g_Y : T(0)));
    }
    // w = m + (1 − K m)·softmax(u): ∂L/∂u_i = (1 − K m)·sw_i·(gw_i − Σ_j sw_j gw_j).
    T dotw = 0, doth = 0;
    for (long j = 0; j < K; ++j) dotw += k.sw[j] * gw[j], doth += k.sh[j] * gh[j];
    const T cw = T(1) - T(K) * T(mw), ch = T(1) - T(K) * T(mh);
    for (long j = 0; j < K; ++j) {
      dp[j] = cw * k.sw[j] * (gw[j] - dotw);
      dp[K + j] = ch * k.sh[j] * (gh[j] - doth);
    }
    // Interior derivatives D_j = m_d + softplus(u + c): ∂/∂u = sigmoid(u + c). The tails' D_0 = D_K = 1 are
    // constants.
    const T c = spline_detail::derivative_offset(T(md));
    if (b >= 1) dp[2 * K + b - 1] += g_dk * spline_detail::sigmoid(p[2 * K + b - 1] + c);
    if (b + 1 <= K - 1) dp[2 * K + b] += g_dk1 * spline_detail::sigmoid(p[2 * K + b] + c);
  }
};
}  // namespace fn

/// The element-wise spline applied to x with per-element parameters p (rows × D·P): y, and the per-row log-det.
template <class B>
FlowOut<B> rq_spline(const Tensor<B>& x, const Tensor<B>& p, const SplineShape& sh, bool inverse, bool want_logdet) {
  Tensor<B> y(x.rows(), x.cols(), uninit), l(x.rows(), x.cols(), uninit);
  packed_map(fn::RqSpline{sh.bins, sh.bound, sh.min_width, sh.min_height, sh.min_derivative, inverse}, sh.params(), x,
             p, y, l);
  return {std::move(y), want_logdet ? row_sum(l) : Tensor<B>{}};
}

/// Spline coupling: the dimensions the mask marks 0 go through a spline whose parameters the conditioner computes
/// from the kept ones ([x ⊙ mask, cond] → D·P, packed per dimension); the rest pass unchanged.
/// Whether a backend has the optional packed-parameter maps the splines run on.
template <class B>
concept HasPackedMaps = requires(const Tensor<B>& c, Tensor<B>& m) {
  packed_map(fn::RqSpline{}, 1L, c, c, m, m);
  packed_map_grad(fn::RqSplineGrad{}, 1L, c, c, c, c, m, m);
};

template <Backend B, class Net = MLP<B, act::ReLU>>
class SplineCoupling : public FlowLayerBase<SplineCoupling<B, Net>, B> {
  static_assert(HasPackedMaps<B>, "SplineCoupling<B>: the backend lacks the optional primitives packed_map and "
                                  "packed_map_grad (backend/cpu/ops.hpp has the reference versions)");
  static_assert(check_module_contract<Net>());
  static_assert(std::is_same_v<typename Net::backend, B>,
                "SplineCoupling<B, Net>: the conditioner network must use the same backend as the layer.");

 public:
  static constexpr const char* layer_name = "SplineCoupling";
  using T = typename B::scalar;
  struct Context {
    Tensor<B> x, p;
    typename Net::Context net;
  };

  SplineCoupling() = default;
  SplineCoupling(std::vector<int> mask, Net net, SplineShape shape = {}, long cond_features = 0)
      : d_(static_cast<long>(mask.size())), c_(cond_features), shape_(shape), net(std::move(net)) {
    shape_.validate("SplineCoupling");
    masks::validate(mask, d_);
    if (this->net.in_features() != d_ + c_ || this->net.out_features() != d_ * shape_.params())
      throw shape_error(detail::cat("SplineCoupling: the conditioner must map ", d_ + c_, " -> ", d_ * shape_.params(),
                                    " features (D + context -> D x (3 bins - 1) spline parameters), got ",
                                    this->net.in_features(), " -> ", this->net.out_features()));
    set_masks(mask);
  }
  long features() const { return d_; }
  long cond_features() const { return c_; }
  const SplineShape& shape() const { return shape_; }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    Tensor<B> p = params(x, cond, ctx ? &ctx->net : nullptr);
    FlowOut<B> out = apply(x, p, false, want_logdet);
    if (ctx) {
      ctx->x = x;
      ctx->p = std::move(p);
    }
    return out;
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>& cond, bool want_logdet) const {
    return apply(y, params(y, cond, nullptr), true, want_logdet);  // kept dims of y equal those of x
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("SplineCoupling.backward: dy", dy, ctx.x.rows(), d_);
    require_shape("SplineCoupling.backward: dlogdet", dlogdet, ctx.x.rows(), 1);
    Tensor<B> dxs(ctx.x.rows(), d_, uninit), dp(ctx.p.rows(), ctx.p.cols(), uninit);
    packed_map_grad(fn::RqSplineGrad{shape_.bins, shape_.bound, shape_.min_width, shape_.min_height,
                                     shape_.min_derivative},
                    shape_.params(), ctx.x, ctx.p, zip(fn::Mul{}, dy, inv_mask_), dlogdet, dxs, dp);
    map(dp, fn::Mul{}, dp, param_mask_);  // kept dims have no spline: their parameters get no gradient
    Tensor<B> dinp = net.backward(ctx.net, dp, mode);
    if (!wants_input_grad(mode)) return {};
    // Transformed dims: through the spline; kept dims: identity plus the conditioner's input gradient.
    Tensor<B> dx = zip(fn::AddMul{}, zip(fn::Mul{}, dxs, inv_mask_), dy, mask_);
    if (c_ > 0) dinp = slice_cols(dinp, 0, d_);
    map(dx, fn::AddMul{}, dx, dinp, mask_);
    return dx;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    net.visit_parameters(v, join_name(prefix, "net"));
  }
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "mask"), coupling_detail::mask_buffer(layer_name, mask_, d_, [this](const std::vector<int>& mk,
                                                                                            Tensor<B>) {
        set_masks(mk);
      }));
    visit_buffers_of(net, v, join_name(prefix, "net"));
  }

  Net net;

 private:
  void set_masks(const std::vector<int>& mask) {
    std::vector<T> m(mask.begin(), mask.end()), im, pm;
    for (int v : mask) {
      im.push_back(T(1 - v));
      for (long j = 0; j < shape_.params(); ++j) pm.push_back(T(1 - v));
    }
    mask_ = row_from_host<B>(m);
    inv_mask_ = row_from_host<B>(im);
    param_mask_ = row_from_host<B>(pm);
  }
  /// The spline on the transformed dimensions, the identity on the kept ones (whose parameters are ignored).
  FlowOut<B> apply(const Tensor<B>& x, const Tensor<B>& p, bool inverse, bool want_logdet) const {
    Tensor<B> y(x.rows(), d_, uninit), l(x.rows(), d_, uninit);
    packed_map(fn::RqSpline{shape_.bins, shape_.bound, shape_.min_width, shape_.min_height, shape_.min_derivative,
                            inverse},
               shape_.params(), x, p, y, l);
    map(y, fn::Blend{}, y, x, mask_);
    FlowOut<B> out{std::move(y), {}};
    if (want_logdet) out.logdet = row_sum(zip(fn::Mul{}, l, inv_mask_));
    return out;
  }
  /// Raw spline parameters, rows × D·P (P per dimension, contiguous).
  Tensor<B> params(const Tensor<B>& x, const Tensor<B>& cond, typename Net::Context* nctx) const {
    Tensor<B> inp = zip(fn::Mul{}, x, mask_);
    if (c_ > 0) inp = concat_cols(inp, cond);
    return nctx ? net.forward(std::move(inp), *nctx) : net.forward(inp);
  }
  long d_ = 0, c_ = 0;
  SplineShape shape_;
  Tensor<B> mask_, inv_mask_, param_mask_;
};

/// A spline coupling with an MLP conditioner (D + cond -> hidden... -> D·(3K − 1), last layer zeroed: the layer
/// starts as the identity).
template <Backend B, class Act = act::ReLU>
SplineCoupling<B, MLP<B, Act>> make_spline_coupling(std::vector<int> mask, std::vector<long> hidden, Rng& rng,
                                                    SplineShape shape = {}, long cond_features = 0) {
  shape.validate("make_spline_coupling");
  const long d = static_cast<long>(mask.size());
  return SplineCoupling<B, MLP<B, Act>>(
      std::move(mask), coupling_detail::conditioner<B, Act>(d, cond_features, hidden, d * shape.params(), rng), shape,
      cond_features);
}

/// Spline autoregressive layer (the autoregressive neural spline flow): the spline parameters of dimension i come
/// from a MADE that reads x_<i [and a context]. Density in one pass; sampling in D sequential passes.
template <Backend B, class Act = act::ReLU>
class SplineAutoregressive : public FlowLayerBase<SplineAutoregressive<B, Act>, B> {
  static_assert(HasPackedMaps<B>, "SplineAutoregressive<B>: the backend lacks the optional primitives packed_map "
                                  "and packed_map_grad (backend/cpu/ops.hpp has the reference versions)");

 public:
  static constexpr const char* layer_name = "SplineAutoregressive";
  using T = typename B::scalar;
  using Net = MLP<B, Act, MaskedLinear<B>>;
  struct Context {
    Tensor<B> x, p;
    typename Net::Context net;
  };

  SplineAutoregressive() = default;
  /// d features, the MADE's hidden widths, the spline shape, an optional context size. The MADE's last layer starts
  /// at zero: the layer starts as the identity.
  SplineAutoregressive(long d, std::vector<long> hidden, Rng& rng, SplineShape shape = {}, long cond_features = 0)
      : d_(d), c_(cond_features), shape_(shape) {
    shape_.validate("SplineAutoregressive");
    if (d <= 0) throw usage_error(detail::cat("SplineAutoregressive: features must be positive, got ", d));
    if (hidden.empty()) throw usage_error("SplineAutoregressive: needs at least one hidden layer");
    std::vector<long> sizes{d + cond_features};
    sizes.insert(sizes.end(), hidden.begin(), hidden.end());
    sizes.push_back(d * shape_.params());
    net = Net(sizes, rng);
    const auto ms = made::masks<T>(d, cond_features, hidden, shape_.params(), true);
    for (std::size_t i = 0; i < ms.size(); ++i) net.linear(i).set_mask(from_host<B>(ms[i]));
    net.zero_last();
  }
  long features() const { return d_; }
  long cond_features() const { return c_; }
  const SplineShape& shape() const { return shape_; }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    Tensor<B> p = params(x, cond, ctx ? &ctx->net : nullptr);
    FlowOut<B> out = rq_spline(x, p, shape_, false, want_logdet);
    if (ctx) {
      ctx->x = x;
      ctx->p = std::move(p);
    }
    return out;
  }
  /// Sequential: pass i fixes dimension i (its parameters depend on x_<i only), D passes in all.
  FlowOut<B> inverse_impl(const Tensor<B>& z, const Tensor<B>& cond, bool want_logdet) const {
    require_cols("SplineAutoregressive.inverse: z", z, d_);
    Tensor<B> x(z.rows(), d_);
    FlowOut<B> out;
    for (long i = 0; i < d_; ++i) {
      out = rq_spline(z, params(x, cond, nullptr), shape_, true, want_logdet && i + 1 == d_);
      x = out.y;
    }
    return out;
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("SplineAutoregressive.backward: dy", dy, ctx.x.rows(), d_);
    require_shape("SplineAutoregressive.backward: dlogdet", dlogdet, ctx.x.rows(), 1);
    Tensor<B> dx(ctx.x.rows(), d_, uninit), dp(ctx.p.rows(), ctx.p.cols(), uninit);
    packed_map_grad(fn::RqSplineGrad{shape_.bins, shape_.bound, shape_.min_width, shape_.min_height,
                                     shape_.min_derivative},
                    shape_.params(), ctx.x, ctx.p, dy, dlogdet, dx, dp);
    Tensor<B> dinp = net.backward(ctx.net, dp, mode);
    if (!wants_input_grad(mode)) return {};
    add_inplace(dx, c_ > 0 ? slice_cols(dinp, 0, d_) : dinp);
    return dx;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    net.visit_parameters(v, join_name(prefix, "net"));
  }
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    net.visit_buffers(v, join_name(prefix, "net"));
  }

  Net net;

 private:
  Tensor<B> params(const Tensor<B>& x, const Tensor<B>& cond, typename Net::Context* nctx) const {
    const Tensor<B> in = c_ > 0 ? concat_cols(x, cond) : Tensor<B>{};
    const Tensor<B>& inp = c_ > 0 ? in : x;
    return nctx ? net.forward(inp, *nctx) : net.forward(inp);
  }
  long d_ = 0, c_ = 0;
  SplineShape shape_;
};

}  // namespace biflow
