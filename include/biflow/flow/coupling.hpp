#pragma once
// Coupling layers. Affine (RealNVP): y = x ⊙ exp(s) + t on the dimensions the mask marks 0, identity on the rest,
// with (s, t) = net([x ⊙ mask, cond]); s = c·tanh(s_raw / c) keeps the scale bounded. Additive (NICE, Dinh et al.
// 2014): the scale-free special case y = x + t, volume-preserving (log-det 0); NICE ends with a DiagonalScaling.
#include <vector>

#include "../nn/mlp.hpp"
#include "flow_layer.hpp"
#include "masks.hpp"

namespace biflow {

namespace fn {
struct AffineFwd {  // x*exp(s) + t
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T s, T t) const { return x * fastmath::vexp(s) + t; }
};
struct AffineInv {  // (y - t)*exp(-s)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T y, T s, T t) const { return (y - t) * fastmath::vexp(-s); }
};
/// d loss / d s_raw for coupling: ((dy*x*exp(s) + dl) * inv_mask) * clamp'(s)
struct CouplingDsRaw {
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T dy, T x, T s, T dl, T im) const {
    const T g = (dy * x * fastmath::vexp(s) + dl) * im;
    if (c <= 0) return g;
    const T u = s / T(c);
    return g * (T(1) - u * u);
  }
};
}  // namespace fn

namespace coupling_detail {
/// A coupling layer's mask as a buffer ("mask": 1 = kept, [D]). A loaded mask must hold only 0 and 1 and have D
/// entries; `set(mask_as_ints, tensor)` installs it.
template <class B, class Set>
Buffer mask_buffer(const char* who, const Tensor<B>& mask, long d, Set set) {
  using T = typename B::scalar;
  return tensor_buffer(mask, [who, d, set](Tensor<B> m) {
    const HostMatrix<T> h = to_host(m);
    std::vector<int> mk;
    for (long i = 0; i < h.size(); ++i) {
      if (h.data()[i] != T(0) && h.data()[i] != T(1))
        throw usage_error(detail::cat(who, ": mask entry ", i, " is ", h.data()[i], ", expected 0 or 1"));
      mk.push_back(int(h.data()[i]));
    }
    masks::validate(mk, d);
    set(mk, std::move(m));
  });
}
/// The MLP conditioner of a coupling: (D + context) -> hidden... -> out, last layer zeroed (the layer starts as the
/// identity).
template <class B, class Act>
MLP<B, Act> conditioner(long d, long cond_features, const std::vector<long>& hidden, long out, Rng& rng) {
  std::vector<long> sizes{d + cond_features};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(out);
  MLP<B, Act> net(sizes, rng);
  net.zero_last();
  return net;
}
}  // namespace coupling_detail

template <Backend B, class Net = MLP<B, act::ReLU>>
class AffineCoupling : public FlowLayerBase<AffineCoupling<B, Net>, B> {
  static_assert(check_module_contract<Net>());
  static_assert(std::is_same_v<typename Net::backend, B>,
                "AffineCoupling<B, Net>: the conditioner network must use the same backend as the layer.");

 public:
  static constexpr const char* layer_name = "AffineCoupling";
  using T = typename B::scalar;
  struct Context {
    Tensor<B> x, s;
    typename Net::Context net;
  };

  AffineCoupling() = default;
  /// mask: 1 = kept dims (fed to net), 0 = transformed; net: (D + cond_features) -> 2D, outputs [s_raw | t].
  /// clamp: bound c on |s| (<= 0: unbounded). The net's last layer should start at zero (identity flow).
  AffineCoupling(std::vector<int> mask, Net net, long cond_features = 0, double clamp = 2.0)
      : d_(static_cast<long>(mask.size())), c_(cond_features), clamp_(clamp), net(std::move(net)) {
    masks::validate(mask, d_);
    if (this->net.in_features() != d_ + c_ || this->net.out_features() != 2 * d_)
      throw shape_error(detail::cat("AffineCoupling: the conditioner must map ", d_ + c_, " -> ", 2 * d_,
                                    " features (D + context -> [scale | shift]), got ", this->net.in_features(),
                                    " -> ", this->net.out_features()));
    std::vector<T> m(mask.begin(), mask.end()), im;
    for (int v : mask) im.push_back(T(1 - v));
    mask_ = row_from_host<B>(m);
    inv_mask_ = row_from_host<B>(im);
  }

  long features() const { return d_; }
  long cond_features() const { return c_; }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    auto [s, t] = scale_shift(x, cond, ctx ? &ctx->net : nullptr);
    FlowOut<B> out{zip(fn::AffineFwd{}, x, s, t), {}};
    if (want_logdet) out.logdet = row_sum(s);
    if (ctx) {
      ctx->x = x;
      ctx->s = std::move(s);
    }
    return out;
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>& cond, bool want_logdet) const {
    auto [s, t] = scale_shift(y, cond, nullptr);  // kept dims of y equal those of x
    FlowOut<B> out{zip(fn::AffineInv{}, y, s, t), {}};
    if (want_logdet) out.logdet = zip(fn::Neg{}, row_sum(s));
    return out;
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("AffineCoupling.backward: dy", dy, ctx.x.rows(), d_);
    require_shape("AffineCoupling.backward: dlogdet", dlogdet, ctx.x.rows(), 1);
    Tensor<B> ds = zip(fn::CouplingDsRaw{clamp_}, dy, ctx.x, ctx.s, dlogdet, inv_mask_);
    Tensor<B> dt = zip(fn::Mul{}, dy, inv_mask_);
    Tensor<B> dinp = net.backward(ctx.net, concat_cols(ds, dt), mode);
    if (!wants_input_grad(mode)) return {};
    Tensor<B> dx = zip(fn::MulExp{}, dy, ctx.s);
    if (c_ > 0) dinp = slice_cols(dinp, 0, d_);
    map(dx, fn::AddMul{}, dx, dinp, mask_);
    return dx;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    net.visit_parameters(v, join_name(prefix, "net"));
  }
  /// "mask" (1 = kept, [D]) and the conditioner's buffers.
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "mask"), coupling_detail::mask_buffer(layer_name, mask_, d_, [this](const std::vector<int>&,
                                                                                            Tensor<B> m) {
        mask_ = std::move(m);
        inv_mask_ = zip(fn::OneMinus{}, mask_);
      }));
    visit_buffers_of(net, v, join_name(prefix, "net"));
  }

  Net net;

 private:
  /// nctx == nullptr: inference through the conditioner.
  std::pair<Tensor<B>, Tensor<B>> scale_shift(const Tensor<B>& x, const Tensor<B>& cond,
                                              typename Net::Context* nctx) const {
    Tensor<B> inp = zip(fn::Mul{}, x, mask_);
    if (c_ > 0) inp = concat_cols(inp, cond);
    const Tensor<B> h = nctx ? net.forward(std::move(inp), *nctx) : net.forward(inp);
    return {zip(fn::SoftClamp{clamp_}, slice_cols(h, 0, d_), inv_mask_),
            zip(fn::Mul{}, slice_cols(h, d_, d_), inv_mask_)};
  }
  long d_ = 0, c_ = 0;
  double clamp_ = 2.0;
  Tensor<B> mask_, inv_mask_;
};

/// NICE's additive coupling: y = x + t(x ⊙ mask [, cond]) on the dimensions the mask marks 0. Volume-preserving:
/// the log-det is exactly 0 in both directions, so a NICE flow needs a DiagonalScaling (or ActNorm) to change
/// volume at all.
template <Backend B, class Net = MLP<B, act::ReLU>>
class AdditiveCoupling : public FlowLayerBase<AdditiveCoupling<B, Net>, B> {
  static_assert(check_module_contract<Net>());
  static_assert(std::is_same_v<typename Net::backend, B>,
                "AdditiveCoupling<B, Net>: the conditioner network must use the same backend as the layer.");

 public:
  static constexpr const char* layer_name = "AdditiveCoupling";
  using T = typename B::scalar;
  struct Context {
    long rows = 0;
    typename Net::Context net;
  };

  AdditiveCoupling() = default;
  /// mask: 1 = kept dims (fed to net), 0 = shifted; net: (D + cond_features) -> D, the shift.
  AdditiveCoupling(std::vector<int> mask, Net net, long cond_features = 0)
      : d_(static_cast<long>(mask.size())), c_(cond_features), net(std::move(net)) {
    masks::validate(mask, d_);
    if (this->net.in_features() != d_ + c_ || this->net.out_features() != d_)
      throw shape_error(detail::cat("AdditiveCoupling: the conditioner must map ", d_ + c_, " -> ", d_,
                                    " features (D + context -> shift), got ", this->net.in_features(), " -> ",
                                    this->net.out_features()));
    std::vector<T> m(mask.begin(), mask.end()), im;
    for (int v : mask) im.push_back(T(1 - v));
    mask_ = row_from_host<B>(m);
    inv_mask_ = row_from_host<B>(im);
  }

  long features() const { return d_; }
  long cond_features() const { return c_; }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    const Tensor<B> t = shift(x, cond, ctx ? &ctx->net : nullptr);
    if (ctx) ctx->rows = x.rows();
    return {zip(fn::Add{}, x, t), want_logdet ? Tensor<B>(x.rows(), 1) : Tensor<B>{}};
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>& cond, bool want_logdet) const {
    const Tensor<B> t = shift(y, cond, nullptr);  // kept dims of y equal those of x
    return {zip(fn::Sub{}, y, t), want_logdet ? Tensor<B>(y.rows(), 1) : Tensor<B>{}};
  }
  /// dlogdet is accepted and ignored: the log-det is the constant 0.
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    require_shape("AdditiveCoupling.backward: dy", dy, ctx.rows, d_);
    require_shape("AdditiveCoupling.backward: dlogdet", dlogdet, ctx.rows, 1);
    Tensor<B> dinp = net.backward(ctx.net, zip(fn::Mul{}, dy, inv_mask_), mode);
    if (!wants_input_grad(mode)) return {};
    if (c_ > 0) dinp = slice_cols(dinp, 0, d_);
    Tensor<B> dx = dy;
    map(dx, fn::AddMul{}, dx, dinp, mask_);
    return dx;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    net.visit_parameters(v, join_name(prefix, "net"));
  }
  /// "mask" (1 = kept, [D]) and the conditioner's buffers.
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "mask"), coupling_detail::mask_buffer(layer_name, mask_, d_, [this](const std::vector<int>&,
                                                                                            Tensor<B> m) {
        mask_ = std::move(m);
        inv_mask_ = zip(fn::OneMinus{}, mask_);
      }));
    visit_buffers_of(net, v, join_name(prefix, "net"));
  }

  Net net;

 private:
  Tensor<B> shift(const Tensor<B>& x, const Tensor<B>& cond, typename Net::Context* nctx) const {
    Tensor<B> inp = zip(fn::Mul{}, x, mask_);
    if (c_ > 0) inp = concat_cols(inp, cond);
    const Tensor<B> h = nctx ? net.forward(std::move(inp), *nctx) : net.forward(inp);
    return zip(fn::Mul{}, h, inv_mask_);
  }
  long d_ = 0, c_ = 0;
  Tensor<B> mask_, inv_mask_;
};

/// A NICE coupling with an MLP conditioner (D + cond -> hidden... -> D, last layer zeroed: starts as the identity).
template <Backend B, class Act = act::ReLU>
AdditiveCoupling<B, MLP<B, Act>> make_additive_coupling(std::vector<int> mask, std::vector<long> hidden, Rng& rng,
                                                        long cond_features = 0) {
  const long d = static_cast<long>(mask.size());
  return AdditiveCoupling<B, MLP<B, Act>>(
      std::move(mask), coupling_detail::conditioner<B, Act>(d, cond_features, hidden, d, rng), cond_features);
}

/// A RealNVP coupling with an MLP conditioner (D + cond -> hidden... -> 2D, last layer zeroed so the
/// layer starts as the identity).
template <Backend B, class Act = act::ReLU>
AffineCoupling<B, MLP<B, Act>> make_coupling(std::vector<int> mask, std::vector<long> hidden, Rng& rng,
                                             long cond_features = 0, double clamp = 2.0) {
  const long d = static_cast<long>(mask.size());
  return AffineCoupling<B, MLP<B, Act>>(
      std::move(mask), coupling_detail::conditioner<B, Act>(d, cond_features, hidden, 2 * d, rng), cond_features, clamp);
}

}  // namespace biflow
