#pragma once
// Householder flow (Tomczak & Welling 2016): y = x·H₁·H₂⋯H_K with reflections H = I − 2vvᵀ/‖v‖². Orthogonal, so
// volume-preserving (log-det 0) and exactly invertible (the reflections in reverse order). K = D reflections reach
// every orthogonal matrix of determinant (−1)^D; it also builds the orthogonal Q of Sylvester flows (sylvester.hpp).
#include <string>
#include <vector>

#include "flow_layer.hpp"

namespace biflow {

namespace fn {
/// y − 2·s·v/n with s = y·v, n = ‖v‖² (the identity for v = 0, where the reflection is undefined).
struct Reflect {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T y, T s, T v, T n) const { return n > T(0) ? y - T(2) * s * v / n : y; }
};
/// ∂loss/∂v of one reflection, summed over rows: −2/n·(A + Bv) + 4·sg·v/n², with A = Σ (g·v)·y, Bv = Σ (y·v)·g and
/// sg = Σ (y·v)(g·v).
struct ReflectDv {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T A, T Bv, T sg, T v, T n) const {
    return n > T(0) ? T(-2) / n * (A + Bv) + T(4) * sg * v / (n * n) : T(0);
  }
};
}  // namespace fn

template <Backend B>
class Householder : public FlowLayerBase<Householder<B>, B> {
 public:
  static constexpr const char* layer_name = "Householder";
  using T = typename B::scalar;
  struct Context {
    std::vector<Tensor<B>> inputs;  // the input of each reflection
  };
  Householder() = default;
  /// K reflections of D-vectors, v_k ~ N(0, 1/D) (a random orthogonal map; any nonzero v is a reflection).
  Householder(long d, long reflections, Rng& rng) : d_(d) {
    if (d <= 0) throw usage_error(detail::cat("Householder: features must be positive, got ", d));
    if (reflections <= 0) throw usage_error(detail::cat("Householder: reflections must be positive, got ", reflections));
    for (long k = 0; k < reflections; ++k) {
      Parameter<B> p(Tensor<B>(1, d));
      fill_normal(p.value, rng, T(0), T(1.0 / std::sqrt(double(d))));
      v.push_back(std::move(p));
    }
  }
  long features() const { return d_; }
  long cond_features() const { return 0; }
  long reflections() const { return long(v.size()); }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, bool want_logdet) const {
    Tensor<B> y = x;
    if (ctx) ctx->inputs.clear();
    for (const Parameter<B>& p : v) {
      if (ctx) ctx->inputs.push_back(y);
      y = reflect(y, p.value);
    }
    return {std::move(y), want_logdet ? Tensor<B>(x.rows(), 1) : Tensor<B>{}};
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>&, bool want_logdet) const {
    Tensor<B> x = y;
    for (auto it = v.rbegin(); it != v.rend(); ++it) x = reflect(x, it->value);
    return {std::move(x), want_logdet ? Tensor<B>(y.rows(), 1) : Tensor<B>{}};
  }
  /// The log-det is 0 everywhere, so dlogdet does not reach x or v.
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    if (ctx.inputs.size() != v.size())
      throw usage_error("Householder.backward: the context does not come from this layer's training forward");
    require_shape("Householder.backward: dy", dy, ctx.inputs.front().rows(), d_);
    require_shape("Householder.backward: dlogdet", dlogdet, ctx.inputs.front().rows(), 1);
    Tensor<B> g = dy;
    for (std::size_t i = v.size(); i-- > 0;) {
      const Tensor<B>& y = ctx.inputs[i];
      const Tensor<B>& vk = v[i].value;
      const Tensor<B> n = matmul(vk, false, vk, true);
      const Tensor<B> gv = matmul(g, false, vk, true);
      if (wants_grad(mode, v[i])) {
        const Tensor<B> s = matmul(y, false, vk, true);
        const Tensor<B> A = matmul(gv, true, y, false), Bv = matmul(s, true, g, false), sg = matmul(s, true, gv, false);
        map(v[i].grad, fn::Add{}, v[i].grad, zip(fn::ReflectDv{}, A, Bv, sg, vk, n));
      }
      if (i > 0 || wants_input_grad(mode)) g = zip(fn::Reflect{}, g, gv, vk, n);  // H is symmetric: dx = H·dy
    }
    if (!wants_input_grad(mode)) return {};
    return g;
  }
  template <class V>
  void visit_parameters(V&& vis, const std::string& prefix) {
    for (std::size_t i = 0; i < v.size(); ++i) vis(join_name(join_name(prefix, "v"), std::to_string(i)), v[i]);
  }
  std::vector<Parameter<B>> v;

 private:
  static Tensor<B> reflect(const Tensor<B>& y, const Tensor<B>& vk) {
    return zip(fn::Reflect{}, y, matmul(y, false, vk, true), vk, matmul(vk, false, vk, true));
  }
  long d_ = 0;
};

}  // namespace biflow
