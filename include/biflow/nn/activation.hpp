#pragma once
#include <cmath>

#include <type_traits>

#include "../core/fast_math.hpp"
#include "module.hpp"

namespace biflow {

/// Activation functions: value(x) and grad(x) = d value / dx.
namespace act {
// Activations whose derivative is a function of the output (ReLU, tanh) declare grad_from_output and
// grad_y(y): an MLP then applies them in place and keeps no pre-activation copy.
struct ReLU {
  static constexpr const char* name = "relu";
  static constexpr bool grad_from_output = true;
  template <class T>
  BIFLOW_HOST_DEVICE static T grad_y(T y) { return y > T(0) ? T(1) : T(0); }
  template <class T>
  BIFLOW_HOST_DEVICE static T value(T x) { return x > T(0) ? x : T(0); }
  template <class T>
  BIFLOW_HOST_DEVICE static T grad(T x) { return x > T(0) ? T(1) : T(0); }
};
/// Exact (erf) GELU, as torch.nn.GELU() by default. Float on the host uses the vectorisable fastmath erf/exp
/// (error ~1e-7, below float resolution); double and device code use the library functions.
struct GELU {
  static constexpr const char* name = "gelu";
  static constexpr bool grad_from_output = false;
  template <class T>
  BIFLOW_HOST_DEVICE static T cdf(T x) {
#if !BIFLOW_DEVICE_COMPILE
    if constexpr (std::is_same_v<T, float>) return 0.5f * (1.0f + fastmath::erf(x * 0.70710678f));
#endif
    return T(0.5) * (T(1) + std::erf(x * T(0.7071067811865476)));
  }
  template <class T>
  BIFLOW_HOST_DEVICE static T pdf(T x) {
#if !BIFLOW_DEVICE_COMPILE
    if constexpr (std::is_same_v<T, float>) return 0.39894228f * fastmath::exp(-0.5f * x * x);
#endif
    return T(0.3989422804014327) * std::exp(T(-0.5) * x * x);
  }
  template <class T>
  BIFLOW_HOST_DEVICE static T value(T x) { return x * cdf(x); }
  template <class T>
  BIFLOW_HOST_DEVICE static T grad(T x) {
#if !BIFLOW_DEVICE_COMPILE
    if constexpr (std::is_same_v<T, float>) {  // Φ(x) and φ(x) share exp(-x²/2): one exponential, not two
      const float e = fastmath::exp(-0.5f * x * x);
      return 0.5f * (1.0f + fastmath::erf_with_exp(x * 0.70710678f, e)) + x * 0.39894228f * e;
    }
#endif
    return cdf(x) + x * pdf(x);
  }
};
struct SiLU {
  static constexpr const char* name = "silu";
  static constexpr bool grad_from_output = false;
  template <class T>
  BIFLOW_HOST_DEVICE static T value(T x) { return x / (T(1) + std::exp(-x)); }
  template <class T>
  BIFLOW_HOST_DEVICE static T grad(T x) {
    const T s = T(1) / (T(1) + std::exp(-x));
    return s * (T(1) + x * (T(1) - s));
  }
};
struct Tanh {
  static constexpr const char* name = "tanh";
  static constexpr bool grad_from_output = true;
  template <class T>
  BIFLOW_HOST_DEVICE static T grad_y(T y) { return T(1) - y * y; }
  template <class T>
  BIFLOW_HOST_DEVICE static T value(T x) { return std::tanh(x); }
  template <class T>
  BIFLOW_HOST_DEVICE static T grad(T x) {
    const T y = std::tanh(x);
    return T(1) - y * y;
  }
};
}  // namespace act

namespace fn {
template <class A>
struct ActValue {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x) const { return A::value(x); }
};
template <class A>
struct BiasActValue {  // f(x + b)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T b) const { return A::value(x + b); }
};
template <class A>
struct ActBackwardFromOutput {  // dy * f'(f⁻¹(y))
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T dy, T y) const { return dy * A::grad_y(y); }
};
template <class A>
struct ActBackward {  // dy * f'(x)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T dy, T x) const { return dy * A::grad(x); }
};
}  // namespace fn

/// Elementwise activation module (no parameters).
template <Backend B, class A>
class Activation {
 public:
  using backend = B;
  struct Context {
    Tensor<B> x;
  };
  Activation() = default;
  explicit Activation(long features) : n_(features) {}
  long in_features() const { return n_; }
  long out_features() const { return n_; }
  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return forward(Tensor<B>(x), ctx); }
  Tensor<B> forward(Tensor<B>&& x, Context& ctx) const {
    if (n_ > 0) require_cols("Activation.forward", x, n_);
    ctx.x = std::move(x);
    return zip(fn::ActValue<A>{}, ctx.x);
  }
  Tensor<B> forward(const Tensor<B>& x) const {
    if (n_ > 0) require_cols("Activation.forward", x, n_);
    return zip(fn::ActValue<A>{}, x);
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    require_shape("Activation.backward", dy, ctx.x.rows(), ctx.x.cols());
    if (!wants_input_grad(mode)) return {};
    return zip(fn::ActBackward<A>{}, dy, ctx.x);
  }
  template <class V>
  void visit_parameters(V&&, const std::string&) {}

 private:
  long n_ = 0;
};

}  // namespace biflow
