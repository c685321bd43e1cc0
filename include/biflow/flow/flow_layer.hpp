#pragma once
// The flow layer contract (data → noise direction):
//   FlowOut<B> forward(x, ctx, cond = {}, policy = logdet::analytic) const   saves what backward needs in ctx
//   Tensor<B>  backward(ctx, dy, dlogdet)        returns dx, accumulates parameter gradients
//   FlowOut<B> inverse(y, cond = {}, policy) const   exact inverse and log|det ∂x/∂y|
//   long features() const, long cond_features() const (0 = unconditional), visit_parameters(v, prefix)
// FlowLayerBase implements forward/inverse (input checks + log-det policy) on top of a layer's
// forward_impl / inverse_impl, so a new layer only writes the math.
#include <concepts>
#include <string>

#include "../core/parameter.hpp"
#include "logdet.hpp"

namespace biflow {

template <class L>
concept FlowLayer = requires(L& m, const L& cm, typename L::Context& ctx, const Tensor<typename L::backend>& x) {
  typename L::backend;
  typename L::Context;
  { cm.forward(x, ctx, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
  { cm.inverse(x, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
  { m.backward(ctx, x, x) } -> std::same_as<Tensor<typename L::backend>>;
  { cm.features() } -> std::convertible_to<long>;
  { cm.cond_features() } -> std::convertible_to<long>;
  m.visit_parameters(detail::AnyVisitor{}, std::string{});
};

/// One readable sentence per missing piece of the FlowLayer contract; `static_assert(check_flow_layer<L>())`.
template <class L>
constexpr bool check_flow_layer() {
  static_assert(requires { typename L::backend; },
                "flow layer: missing `using backend = Cpu<T> or Cuda<T>;` (see docs/module-contract.md)");
  static_assert(requires { typename L::Context; },
                "flow layer: missing `struct Context` holding what forward saves for backward");
  static_assert(requires(const L& cm, typename L::Context& c, const Tensor<typename L::backend>& x) {
    { cm.forward(x, c, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
  }, "flow layer: missing `FlowOut<B> forward(x, ctx, cond, policy) const` (derive from FlowLayerBase and "
     "write forward_impl)");
  static_assert(requires(const L& cm, const Tensor<typename L::backend>& x) {
    { cm.inverse(x, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
  }, "flow layer: missing `FlowOut<B> inverse(y, cond, policy) const` (derive from FlowLayerBase and write "
     "inverse_impl)");
  static_assert(requires(L& m, typename L::Context& c, const Tensor<typename L::backend>& x) {
    { m.backward(c, x, x) } -> std::same_as<Tensor<typename L::backend>>;
  }, "flow layer: missing `Tensor<B> backward(const Context&, const Tensor<B>& dy, const Tensor<B>& dlogdet)`");
  static_assert(requires(const L& cm) {
    { cm.features() } -> std::convertible_to<long>;
    { cm.cond_features() } -> std::convertible_to<long>;
  }, "flow layer: missing `long features() const` and/or `long cond_features() const`");
  static_assert(requires(L& m) { m.visit_parameters(detail::AnyVisitor{}, std::string{}); },
                "flow layer: missing `template <class V> void visit_parameters(V&&, const std::string& prefix)` "
                "(may be empty for parameter-free layers)");
  return true;
}

/// rows x 1 tensor, every entry sign·Σ v for the 1 x D row v (a data-independent log-det such as Σ log_scale),
/// built on the backend without a host round trip.
template <class B>
Tensor<B> repeated_logdet(const Tensor<B>& v, long rows, double sign) {
  const Tensor<B> s = row_sum(v);
  Tensor<B> out(rows, 1, uninit);
  map(out, fn::Scale{sign}, s);
  return out;
}

/// CRTP base: checks shapes, applies the log-det policy, and forwards to Derived::forward_impl(x, ctx,
/// cond, bool want_logdet) and Derived::inverse_impl(y, cond, bool want_logdet).
template <class Derived, Backend B>
class FlowLayerBase {
 public:
  using backend = B;

  template <class Ctx, LogDetPolicy P = logdet::Analytic>
  FlowOut<B> forward(const Tensor<B>& x, Ctx& ctx, const Tensor<B>& cond = {}, P = {}) const {
    check_inputs("forward", x, cond);
    FlowOut<B> out = self().forward_impl(x, ctx, cond, P::compute);
    if constexpr (std::is_same_v<P, logdet::BruteForce>)
      out.logdet = from_host<B>(slogdet_rows(jacobian_by_backward(self(), x, cond), x.rows(), x.cols()));
    return out;
  }
  template <LogDetPolicy P = logdet::Analytic>
  FlowOut<B> inverse(const Tensor<B>& y, const Tensor<B>& cond = {}, P = {}) const {
    check_inputs("inverse", y, cond);
    FlowOut<B> out = self().inverse_impl(y, cond, P::compute);
    if constexpr (std::is_same_v<P, logdet::BruteForce>) {
      // log|det ∂x/∂y| = -log|det ∂y/∂x| at x = f⁻¹(y).
      HostMatrix<typename B::scalar> ld = slogdet_rows(jacobian_by_backward(self(), out.y, cond), y.rows(), y.cols());
      out.logdet = from_host<B>(HostMatrix<typename B::scalar>(-ld));
    }
    return out;
  }

 protected:
  void check_inputs(const char* what, const Tensor<B>& x, const Tensor<B>& cond) const {
    const long d = self().features();
    if (x.cols() != d)
      throw shape_error(detail::cat(Derived::layer_name, ".", what, ": expected ", d, " features (columns), got ",
                                    x.cols(), " (input is ", x.rows(), "x", x.cols(), ")"));
    const long c = self().cond_features();
    if (c > 0) {
      if (cond.empty())
        throw shape_error(detail::cat(Derived::layer_name, ".", what, ": this layer is conditional and needs a ",
                                      x.rows(), "x", c, " context, got none"));
      if (cond.rows() != x.rows() || cond.cols() != c)
        throw shape_error(detail::cat(Derived::layer_name, ".", what, ": expected a ", x.rows(), "x", c,
                                      " context, got ", cond.rows(), "x", cond.cols()));
    }
  }
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

}  // namespace biflow
