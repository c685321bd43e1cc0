#pragma once
// MADE / MAF autoregressive affine layer: (μ_i, α_i) = MADE(x_<i [, cond]); z_i = (x_i - μ_i)·exp(-α_i);
// log-det = -Σ α_i. Density in one pass; the exact inverse is D sequential passes.
#include <vector>

#include "../nn/mlp.hpp"
#include "flow_layer.hpp"

namespace biflow {

namespace fn {
struct NegMulExpNeg {  // -g * exp(-a)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T g, T a) const { return -g * std::exp(-a); }
};
}  // namespace fn

/// MADE degrees and masks (Germain et al. 2015). Inputs 1..D in natural order, context inputs degree 0
/// (they reach every hidden unit), hidden degrees cycle over 1..D-1.
namespace made {
/// Returns the masks of each MaskedLinear, (out x in), 0/1, as host matrices.
template <class T>
std::vector<HostMatrix<T>> masks(long d, long cond, const std::vector<long>& hidden) {
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
  // Output layer: [μ | α], each output d (degree d+1) sees hidden units of degree < d+1.
  const auto& last = deg.back();
  HostMatrix<T> m(2 * d, static_cast<long>(last.size()));
  for (long o = 0; o < 2 * d; ++o)
    for (long i = 0; i < m.cols(); ++i) m(o, i) = (o % d) + 1 > last[i] ? T(1) : T(0);
  out.push_back(m);
  return out;
}
}  // namespace made

template <Backend B, class Act = act::ReLU>
class MaskedAutoregressive : public FlowLayerBase<MaskedAutoregressive<B, Act>, B> {
 public:
  static constexpr const char* layer_name = "MaskedAutoregressive";
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

}  // namespace biflow
