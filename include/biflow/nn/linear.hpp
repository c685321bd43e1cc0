#pragma once
#include <cmath>

#include "../core/rng.hpp"
#include "module.hpp"

namespace biflow {

/// y = x Wᵀ + b with W of shape (out, in) as in torch.nn.Linear; parameters "weight", "bias".
template <Backend B>
class Linear {
 public:
  using backend = B;
  using T = typename B::scalar;
  struct Context {
    Tensor<B> x;
  };

  Linear() = default;
  /// PyTorch's default initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  Linear(long in, long out, Rng& rng, bool bias = true) : in_(in), out_(out), has_bias_(bias) {
    if (in <= 0 || out <= 0)
      throw usage_error(detail::cat("Linear: feature sizes must be positive, got in=", in, " out=", out));
    const T bound = T(1) / std::sqrt(T(in));
    Tensor<B> w(out, in);
    fill_uniform(w, rng, -bound, bound);
    weight = Parameter<B>(std::move(w));
    Tensor<B> b(1, out);
    if (bias) fill_uniform(b, rng, -bound, bound);
    this->bias = Parameter<B>(std::move(b));
  }

  long in_features() const { return in_; }
  long out_features() const { return out_; }
  /// Zero weight and bias: the layer outputs 0 (flows use this to start as the identity).
  void zero_init() {
    set_zero(weight.value);
    set_zero(bias.value);
  }

  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return forward(Tensor<B>(x), ctx); }
  /// Takes ownership of x for the context (no copy when the caller passes a temporary).
  Tensor<B> forward(Tensor<B>&& x, Context& ctx) const {
    require_cols("Linear.forward", x, in_);
    ctx.x = std::move(x);
    return apply(ctx.x, weight.value);
  }
  /// Inference: nothing saved, x not copied.
  Tensor<B> forward(const Tensor<B>& x) const {
    require_cols("Linear.forward", x, in_);
    return apply(x, weight.value);
  }
  /// x Wᵀ *without* the bias, for callers that add the bias themselves fused with the next elementwise op
  /// (MLP does, with its activation). backward() is unchanged: the bias gradient depends on dy only.
  Tensor<B> forward_unbiased(Tensor<B>&& x, Context& ctx) const {
    require_cols("Linear.forward", x, in_);
    ctx.x = std::move(x);
    return matmul(ctx.x, false, weight.value, true);
  }
  Tensor<B> forward_unbiased(const Tensor<B>& x) const {
    require_cols("Linear.forward", x, in_);
    return matmul(x, false, weight.value, true);
  }
  bool has_bias() const { return has_bias_; }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    require_shape("Linear.backward", dy, ctx.x.rows(), out_);
    if (wants_grad(mode, weight)) gemm(dy, true, ctx.x, false, weight.grad, T(1), T(1));
    if (has_bias_ && wants_grad(mode, bias)) col_sum(dy, bias.grad, T(1));
    if (!wants_input_grad(mode)) return {};
    return matmul(dy, false, weight.value, false);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "weight"), weight);
    if (has_bias_) v(join_name(prefix, "bias"), bias);
  }

  Parameter<B> weight, bias;

 protected:
  Tensor<B> apply(const Tensor<B>& x, const Tensor<B>& w) const {
    if (!has_bias_) return matmul(x, false, w, true);
    Tensor<B> y = broadcast_rows(bias.value, x.rows());  // y = b, then y += x Wᵀ in the GEMM itself
    gemm(x, false, w, true, y, T(1), T(1));
    return y;
  }
  long in_ = 0, out_ = 0;
  bool has_bias_ = true;
};

/// Linear layer whose weight is multiplied by a fixed 0/1 mask (MADE). The effective weight W∘M is
/// used in forward and backward, so masked entries never influence anything, whatever their value.
template <Backend B>
class MaskedLinear : public Linear<B> {
 public:
  using typename Linear<B>::T;
  struct Context {
    Tensor<B> x, wm;
  };
  MaskedLinear() = default;
  MaskedLinear(long in, long out, Rng& rng, bool bias = true) : Linear<B>(in, out, rng, bias) {
    mask_ = constant<B>(out, in, T(1));
  }
  /// mask: (out x in) of 0/1.
  void set_mask(Tensor<B> mask) {
    require_shape("MaskedLinear.set_mask", mask, this->out_, this->in_);
    mask_ = std::move(mask);
  }
  const Tensor<B>& mask() const { return mask_; }
  /// The 0/1 mask is state: "mask" (out x in).
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "mask"), tensor_buffer(mask_, [this](Tensor<B> m) { set_mask(std::move(m)); }));
  }

  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return forward(Tensor<B>(x), ctx); }
  Tensor<B> forward(Tensor<B>&& x, Context& ctx) const {
    require_cols("MaskedLinear.forward", x, this->in_);
    ctx.x = std::move(x);
    ctx.wm = zip(fn::Mul{}, this->weight.value, mask_);
    return this->apply(ctx.x, ctx.wm);
  }
  Tensor<B> forward(const Tensor<B>& x) const {
    require_cols("MaskedLinear.forward", x, this->in_);
    return this->apply(x, zip(fn::Mul{}, this->weight.value, mask_));
  }
  Tensor<B> forward_unbiased(Tensor<B>&& x, Context& ctx) const {
    require_cols("MaskedLinear.forward", x, this->in_);
    ctx.x = std::move(x);
    ctx.wm = zip(fn::Mul{}, this->weight.value, mask_);
    return matmul(ctx.x, false, ctx.wm, true);
  }
  Tensor<B> forward_unbiased(const Tensor<B>& x) const {
    require_cols("MaskedLinear.forward", x, this->in_);
    return matmul(x, false, zip(fn::Mul{}, this->weight.value, mask_), true);
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    require_shape("MaskedLinear.backward", dy, ctx.x.rows(), this->out_);
    if (wants_grad(mode, this->weight)) {
      Tensor<B> dw = matmul(dy, true, ctx.x, false);
      map(this->weight.grad, fn::AddMul{}, this->weight.grad, dw, mask_);
    }
    if (this->has_bias_ && wants_grad(mode, this->bias)) col_sum(dy, this->bias.grad, T(1));
    if (!wants_input_grad(mode)) return {};
    return matmul(dy, false, ctx.wm, false);
  }

 private:
  Tensor<B> mask_;
};

}  // namespace biflow
