#pragma once
// MADE autoregressive affine layers, one implementation with a direction policy:
//   MAF (ar::density):   (μ, α) = MADE(x_<i [, cond]); z = (x − μ)·exp(−α). Density in one pass; sampling (the
//                        inverse) is D sequential passes.
//   IAF (ar::sampling):  (μ, α) = MADE(z_<i [, cond]); x = z·exp(α) + μ. Sampling in one pass; density (the
//                        forward, x → z) is D sequential passes, and so is its backward (below).
// log-det of x → z: −Σ α_i for both.
#include <vector>

#include "../nn/mlp.hpp"
#include "flow_layer.hpp"

namespace biflow {

namespace fn {
struct NegMulExpNeg {  // -g * exp(-a)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T g, T a) const { return -g * fastmath::vexp(-a); }
};
/// IAF backward: the MADE output gradient for α_raw given the adjoint w of x = z·exp(α) + μ and the log-det
/// weight dl: sign·(w·z·exp(α) + dl)·slope(α).
struct IafDAlpha {
  double c, sign;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T w, T z, T dl, T a) const {
    return T(sign) * (w * z * fastmath::vexp(a) + dl) * soft_clamp_slope(a, c);
  }
};
/// IAF backward iteration: w = exp(−α)·(dz − u), u the MADE input-VJP of the current w.
struct SubMulExpNeg {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T dz, T u, T a) const { return (dz - u) * fastmath::vexp(-a); }
};
}  // namespace fn

/// MADE degrees and masks (Germain et al. 2015). Inputs 1..D in natural order, context inputs degree 0
/// (they reach every hidden unit), hidden degrees cycle over 1..D-1.
namespace made {
/// Returns the masks of each MaskedLinear, (out x in), 0/1, as host matrices. The output layer has per_dim
/// outputs per dimension: blocked ([all first outputs | all second outputs], MAF's [μ | α]: output o is dimension
/// o mod d) or, with packed = true, contiguous per dimension (output o is dimension o / per_dim: spline parameters).
template <class T>
std::vector<HostMatrix<T>> masks(long d, long cond, const std::vector<long>& hidden, long per_dim = 2,
                                 bool packed = false) {
  std::vector<std::vector<long>> deg;
  std::vector<long> in;
  for (long i = 0; i < d; ++i) in.push_back(i + 1);
  for (long i = 0; i < cond; ++i) in.push_back(0);
  deg.push_back(in);
  for (long h : hidden) {
    std::vector<long> dh;
    for (long k = 0; k < h; ++k) dh.push_back(d > 1 ? (k % (d - 1)) + 1 : 0);
    deg.push_back(dh);
  }
  std::vector<HostMatrix<T>> out;
  for (std::size_t l = 0; l + 1 < deg.size(); ++l) {
    HostMatrix<T> m(static_cast<long>(deg[l + 1].size()), static_cast<long>(deg[l].size()));
    for (long o = 0; o < m.rows(); ++o)
      for (long i = 0; i < m.cols(); ++i) m(o, i) = deg[l + 1][o] >= deg[l][i] ? T(1) : T(0);
    out.push_back(m);
  }
  // Output layer: each output of dimension j (degree j+1) sees hidden units of degree < j+1.
  const auto& last = deg.back();
  HostMatrix<T> m(per_dim * d, static_cast<long>(last.size()));
  for (long o = 0; o < per_dim * d; ++o) {
    const long dim = packed ? o / per_dim : o % d;
    for (long i = 0; i < m.cols(); ++i) m(o, i) = dim + 1 > last[i] ? T(1) : T(0);
  }
  out.push_back(m);
  return out;
}
}  // namespace made

/// Which direction of an autoregressive affine layer is the one-pass one.
namespace ar {
struct density {};   ///< MAF: x → z (density) in one pass, z → x (sampling) in D
struct sampling {};  ///< IAF: z → x (sampling) in one pass, x → z (density) in D
}  // namespace ar

template <Backend B, class Act = act::ReLU, class Dir = ar::density>
class MaskedAutoregressive : public FlowLayerBase<MaskedAutoregressive<B, Act, Dir>, B> {
  static_assert(std::is_same_v<Dir, ar::density> || std::is_same_v<Dir, ar::sampling>,
                "MaskedAutoregressive<B, Act, Dir>: Dir is ar::density (MAF) or ar::sampling (IAF)");
  static constexpr bool iaf = std::is_same_v<Dir, ar::sampling>;

 public:
  static constexpr const char* layer_name = iaf ? "InverseAutoregressive" : "MaskedAutoregressive";
  using T = typename B::scalar;
  using Net = MLP<B, Act, MaskedLinear<B>>;
  struct Context {
    Tensor<B> z, a;
    typename Net::Context net;
  };

  MaskedAutoregressive() = default;
  /// d features, hidden layer widths, optional context size, soft clamp c on |α| (<= 0: none).
  MaskedAutoregressive(long d, std::vector<long> hidden, Rng& rng, long cond_features = 0, double clamp = 3.0)
      : d_(d), c_(cond_features), clamp_(clamp) {
    if (d <= 0) throw usage_error(detail::cat("MaskedAutoregressive: features must be positive, got ", d));
    if (hidden.empty()) throw usage_error("MaskedAutoregressive: needs at least one hidden layer");
    std::vector<long> sizes{d + cond_features};
    sizes.insert(sizes.end(), hidden.begin(), hidden.end());
    sizes.push_back(2 * d);
    net = Net(sizes, rng);
    const auto ms = made::masks<T>(d, cond_features, hidden);
    for (std::size_t i = 0; i < ms.size(); ++i) net.linear(i).set_mask(from_host<B>(ms[i]));
    net.zero_last();
    one_ = constant<B>(1, 1, T(1));
  }

  long features() const { return d_; }
  long cond_features() const { return c_; }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    if constexpr (iaf) return iaf_density(x, ctx, cond, want_logdet);
    auto [mu, a] = params(x, cond, ctx ? &ctx->net : nullptr);
    FlowOut<B> out{zip(fn::AffineArForward{}, x, mu, a), {}};
    if (want_logdet) out.logdet = zip(fn::Neg{}, row_sum(a));
    if (ctx) {
      ctx->z = out.y;
      ctx->a = std::move(a);
    }
    return out;
  }
  /// Sequential: pass i fixes dimension i, D passes in all.
  FlowOut<B> inverse_impl(const Tensor<B>& z, const Tensor<B>& cond, bool want_logdet) const {
    if constexpr (iaf) {  // one pass: the MADE reads z
      auto [mu, a] = params(z, cond, nullptr);
      FlowOut<B> out{zip(fn::AffineArInverse{}, z, mu, a), {}};
      if (want_logdet) out.logdet = row_sum(a);
      return out;
    }
    Tensor<B> x(z.rows(), d_), a;
    for (long i = 0; i < d_; ++i) {
      auto pa = params(x, cond, nullptr);
      x = zip(fn::AffineArInverse{}, z, pa.first, pa.second);
      a = std::move(pa.second);
    }
    FlowOut<B> out{std::move(x), {}};
    if (want_logdet) out.logdet = row_sum(a);
    return out;
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dz, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("MaskedAutoregressive.backward: dz", dz, ctx.z.rows(), d_);
    require_shape("MaskedAutoregressive.backward: dlogdet", dlogdet, ctx.z.rows(), 1);
    if constexpr (iaf) return iaf_backward(ctx, dz, dlogdet, mode);
    Tensor<B> dmu = zip(fn::NegMulExpNeg{}, dz, ctx.a);
    Tensor<B> da = zip(fn::AffineArDAlpha{clamp_}, dz, ctx.z, dlogdet, ctx.a);
    Tensor<B> dinp = net.backward(ctx.net, concat_cols(dmu, da), mode);
    if (!wants_input_grad(mode)) return {};
    Tensor<B> dx = zip(fn::MulExpNeg{}, dz, ctx.a);
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
  /// IAF density: z from x in D passes (pass i fixes z_i, which needs z_<i), then one recorded pass at the final z
  /// for the backward.
  FlowOut<B> iaf_density(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    require_cols("InverseAutoregressive.forward: x", x, d_);
    Tensor<B> z(x.rows(), d_);
    for (long i = 0; i < d_; ++i) {
      auto pa = params(z, cond, nullptr);
      z = zip(fn::AffineArForward{}, x, pa.first, pa.second);
    }
    auto [mu, a] = params(z, cond, ctx ? &ctx->net : nullptr);  // α at the final z (equal to the last pass's)
    FlowOut<B> out{std::move(z), {}};
    if (want_logdet) out.logdet = zip(fn::Neg{}, row_sum(a));
    if (ctx) {
      ctx->z = out.y;
      ctx->a = std::move(a);
    }
    return out;
  }
  /// IAF backward of x → z, where z solves x = g(z) = z·exp(α(z)) + μ(z). With L = ℓ(z) + dl·(−Σα(z)): the input
  /// gradient w = ∂L/∂x solves J_gᵀ w = ∂L/∂z, a triangular system solved exactly by D fixed-point sweeps
  /// w ← exp(−α)·(dz − VJP_MADE(w, (w·z·exp(α) + dl)·slope)), one input-only MADE backward each (MADE's Jacobian
  /// is strictly triangular: sweep k fixes w_{D−k}). Parameters: ∂L/∂θ = −wᵀ ∂g/∂θ − dl·Σ ∂α/∂θ, one MADE
  /// backward with output gradients [−w | −(w·z·exp(α) + dl)·slope].
  Tensor<B> iaf_backward(const Context& ctx, const Tensor<B>& dz, const Tensor<B>& dlogdet, GradMode mode) {
    const bool want_dx = wants_input_grad(mode), want_params = mode != GradMode::input_only;
    Tensor<B> w(dz.rows(), d_);
    // params_only still needs w (the parameter gradient depends on it); only its last use is skipped.
    for (long k = 0; k < d_; ++k) {
      Tensor<B> vjp = net.backward(ctx.net, concat_cols(w, zip(fn::IafDAlpha{clamp_, 1.0}, w, ctx.z, dlogdet, ctx.a)),
                                   GradMode::input_only);
      if (c_ > 0) vjp = slice_cols(vjp, 0, d_);
      w = zip(fn::SubMulExpNeg{}, dz, vjp, ctx.a);
    }
    if (want_params)
      net.backward(ctx.net, concat_cols(zip(fn::Neg{}, w), zip(fn::IafDAlpha{clamp_, -1.0}, w, ctx.z, dlogdet, ctx.a)),
                   GradMode::params_only);
    if (!want_dx) return {};
    return w;
  }
  /// nctx == nullptr: inference through the MADE network.
  std::pair<Tensor<B>, Tensor<B>> params(const Tensor<B>& x, const Tensor<B>& cond,
                                         typename Net::Context* nctx) const {
    const Tensor<B> in = c_ > 0 ? concat_cols(x, cond) : Tensor<B>{};
    const Tensor<B>& inp = c_ > 0 ? in : x;
    const Tensor<B> h = nctx ? net.forward(inp, *nctx) : net.forward(inp);
    return {slice_cols(h, 0, d_), zip(fn::SoftClamp{clamp_}, slice_cols(h, d_, d_), one_)};
  }
  long d_ = 0, c_ = 0;
  double clamp_ = 3.0;
  Tensor<B> one_;
};

/// IAF (Kingma et al. 2016): the same MADE layer with sampling as its one-pass direction.
template <Backend B, class Act = act::ReLU>
using InverseAutoregressive = MaskedAutoregressive<B, Act, ar::sampling>;

}  // namespace biflow
