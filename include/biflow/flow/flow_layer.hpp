#pragma once
// The flow layer contract (data → noise direction):
//   FlowOut<B> forward(x, ctx, cond = {}, policy = logdet::analytic) const   training: saves what backward needs
//   FlowOut<B> forward(x, cond = {}, policy) const                           inference: saves nothing
//   Tensor<B>  backward(ctx, dy, dlogdet, mode = GradMode::all)   returns dx, accumulates parameter gradients
//   FlowOut<B> inverse(y, cond = {}, policy) const   exact inverse and log|det ∂x/∂y| — absent for a layer that
//                                                    declares `static constexpr bool has_inverse = false` (planar,
//                                                    radial: density / forward sampling only; a learned G inverts)
//   long features() const, long cond_features() const (0 = unconditional), visit_parameters(v, prefix)
// FlowLayerBase implements forward/inverse (input checks + log-det policy) on top of a layer's
// forward_impl(x, Context* ctx, cond, want_logdet) — ctx == nullptr is the inference pass — and
// inverse_impl, so a new layer writes the math once.
#include <concepts>
#include <string>

#include "../nn/parameter.hpp"
#include "logdet.hpp"

namespace biflow {

/// A layer that says it has no closed-form inverse (`static constexpr bool has_inverse = false;`): planar and radial
/// flows. Its forward is everything it offers — a density model read data → noise, or a sampler read noise → data
/// (variational inference) — and a learned inverse is the way back.
template <class L>
inline constexpr bool declares_no_inverse = [] {
  if constexpr (requires { L::has_inverse; }) return !static_cast<bool>(L::has_inverse);
  else return false;
}();

/// The forward half of the contract: forward (training and inference), backward, sizes, parameters. Every flow layer
/// is one; what needs only log-densities or forward samples (log_prob, nll, MleTrainer, ElboTrainer) asks no more.
template <class L>
concept ForwardFlowLayer =
    requires(L& m, const L& cm, typename L::Context& ctx, const Tensor<typename L::backend>& x) {
      typename L::backend;
      typename L::Context;
      { cm.forward(x, ctx, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
      { cm.forward(x, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
      { m.backward(ctx, x, x, GradMode::all) } -> std::same_as<Tensor<typename L::backend>>;
      { cm.features() } -> std::convertible_to<long>;
      { cm.cond_features() } -> std::convertible_to<long>;
      m.visit_parameters(detail::AnyVisitor{}, std::string{});
    };

/// The whole contract: a forward flow layer with an exact inverse (what sampling through F⁻¹ needs).
template <class L>
concept FlowLayer = ForwardFlowLayer<L> && requires(const L& cm, const Tensor<typename L::backend>& x) {
  { cm.inverse(x, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
};

/// L's inverse takes the option Opt: `inverse(y, cond, opt, policy)` (Guidance<B> for TARFlow blocks). A
/// composite takes an option when one of its layers does, and hands it to exactly those layers.
template <class L, class Opt>
concept TakesInverseOption = requires(const L& l, const Tensor<typename L::backend>& y, const Opt& o) {
  { l.inverse_impl(y, y, true, o) } -> std::same_as<FlowOut<typename L::backend>>;
} || requires(const L& l, const Tensor<typename L::backend>& y, const Opt& o) {
  { l.inverse_impl(y, y, logdet::analytic, o) } -> std::same_as<FlowOut<typename L::backend>>;
};

/// One readable sentence per missing piece of the FlowLayer contract; `static_assert(check_flow_layer_contract<L>())`.
/// (Compile time; the numerical checker is testing::check_flow_layer(layer, x).)
template <class L>
constexpr bool check_flow_layer_contract() {
  static_assert(requires { typename L::backend; },
                "flow layer: missing `using backend = Cpu<T> or Cuda<T>;` (see docs/module-contract.md)");
  static_assert(requires { typename L::Context; },
                "flow layer: missing `struct Context` holding what forward saves for backward");
  static_assert(requires(const L& cm, typename L::Context& c, const Tensor<typename L::backend>& x) {
    { cm.forward(x, c, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
  }, "flow layer: missing `FlowOut<B> forward(x, ctx, cond, policy) const` (derive from FlowLayerBase and "
     "write forward_impl)");
  static_assert(requires(const L& cm, const Tensor<typename L::backend>& x) {
    { cm.forward(x, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
  }, "flow layer: missing the inference pass `FlowOut<B> forward(x, cond, policy) const` (derive from "
     "FlowLayerBase; its forward_impl gets ctx == nullptr then; since 0.3)");
  static_assert(declares_no_inverse<L> || requires(const L& cm, const Tensor<typename L::backend>& x) {
    { cm.inverse(x, x, logdet::analytic) } -> std::same_as<FlowOut<typename L::backend>>;
  }, "flow layer: missing `FlowOut<B> inverse(y, cond, policy) const` (derive from FlowLayerBase and write "
     "inverse_impl; a layer without a closed-form inverse says `static constexpr bool has_inverse = false;`)");
  static_assert(requires(L& m, typename L::Context& c, const Tensor<typename L::backend>& x) {
    { m.backward(c, x, x, GradMode::all) } -> std::same_as<Tensor<typename L::backend>>;
  }, "flow layer: missing `Tensor<B> backward(const Context&, const Tensor<B>& dy, const Tensor<B>& dlogdet, "
     "GradMode mode = GradMode::all)` (the GradMode argument is new in 0.3)");
  static_assert(requires(const L& cm) {
    { cm.features() } -> std::convertible_to<long>;
    { cm.cond_features() } -> std::convertible_to<long>;
  }, "flow layer: missing `long features() const` and/or `long cond_features() const`");
  static_assert(requires(L& m) { m.visit_parameters(detail::AnyVisitor{}, std::string{}); },
                "flow layer: missing `template <class V> void visit_parameters(V&&, const std::string& prefix)` "
                "(may be empty for parameter-free layers)");
  return true;
}
template <class L>
[[deprecated("biflow 0.3: the compile-time check is check_flow_layer_contract<L>(); testing::check_flow_layer(layer, "
             "x) is the numerical one")]] constexpr bool check_flow_layer() {
  return check_flow_layer_contract<L>();
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

/// Input-only backward through a const layer. Under GradMode::input_only the contract forbids a backward to
/// write to its layer (no gradients, no state), so scoring a frozen model needs no mutable one.
template <class L, class B>
Tensor<B> backward_input(const L& layer, const typename L::Context& ctx, const Tensor<B>& dy,
                         const Tensor<B>& dlogdet) {
  return const_cast<L&>(layer).backward(ctx, dy, dlogdet, GradMode::input_only);
}

/// CRTP base: checks shapes, applies the log-det policy, and forwards to Derived::forward_impl(x, Context* ctx,
/// cond, bool want_logdet) — ctx == nullptr for the inference pass — and Derived::inverse_impl(y, cond,
/// bool want_logdet).
template <class Derived, Backend B>
class FlowLayerBase {
  static_assert(check_backend<B>());  // a backend missing a primitive fails here, with its name

 public:
  using backend = B;

  /// Training pass: ctx receives what backward needs. (The constraint cannot name Derived::Context: nvcc checks
  /// it while Derived is still incomplete; the body checks it.)
  template <class Ctx, LogDetPolicy P = logdet::Analytic>
    requires(!std::is_same_v<Ctx, Tensor<B>> && !std::is_same_v<Ctx, const Tensor<B>>)
  FlowOut<B> forward(const Tensor<B>& x, Ctx& ctx, const Tensor<B>& cond = {}, P policy = {}) const {
    static_assert(std::is_same_v<Ctx, typename Derived::Context>,
                  "flow layer forward(x, ctx, …): ctx must be this layer's own `Context` (typename L::Context)");
    return run_forward(x, &ctx, cond, policy);
  }
  /// Inference pass: nothing is saved (no context, no copies of the input).
  template <LogDetPolicy P = logdet::Analytic>
  FlowOut<B> forward(const Tensor<B>& x, const Tensor<B>& cond = {}, P policy = {}) const {
    return run_forward(x, static_cast<typename Derived::Context*>(nullptr), cond, policy);
  }
  /// Exact inverse. Absent (a compile error naming `declares_no_inverse`) for layers that declare has_inverse = false.
  // (D = Derived as a parameter of the member template: the constraint is then checked at the call, when the layer
  // type is complete — a compiler may otherwise evaluate it at the base clause, while Derived is still incomplete.)
  template <LogDetPolicy P = logdet::Analytic, class D = Derived>
    requires(!declares_no_inverse<D>)
  FlowOut<B> inverse(const Tensor<B>& y, const Tensor<B>& cond = {}, P policy = {}) const {
    check_inputs("inverse", y, cond);
    FlowOut<B> out;
    if constexpr (requires(const Derived& d) { d.inverse_impl(y, cond, policy); }) out = self().inverse_impl(y, cond, policy);
    else out = self().inverse_impl(y, cond, P::compute);
    if constexpr (std::is_same_v<P, logdet::BruteForce>) {
      // log|det ∂x/∂y| = -log|det ∂y/∂x| at x = f⁻¹(y).
      HostMatrix<typename B::scalar> ld = slogdet_rows(jacobian_by_backward(self(), out.y, cond), y.rows(), y.cols());
      out.logdet = from_host<B>(HostMatrix<typename B::scalar>(-ld));
    }
    return out;
  }
  /// Inverse with an option the flow's layers understand (Guidance<B> for TARFlow blocks: classifier-free
  /// guidance while decoding); layers that do not take it invert as usual.
  template <class Opt, LogDetPolicy P = logdet::Analytic, class D = Derived>
    requires(!LogDetPolicy<Opt> && !declares_no_inverse<D>)
  FlowOut<B> inverse(const Tensor<B>& y, const Tensor<B>& cond, const Opt& opt, P policy = {}) const {
    static_assert(TakesInverseOption<Derived, Opt>,
                  "flow layer inverse(y, cond, option, policy): no layer of this flow takes this option type (a "
                  "layer takes an option by defining inverse_impl(y, cond, bool want_logdet, const Option&))");
    static_assert(!std::is_same_v<P, logdet::BruteForce>,
                  "flow layer inverse(y, cond, option, logdet::brute_force): an inverse with options (e.g. guided "
                  "decoding) is not the inverse of forward, so forward's Jacobian does not give its log-det");
    check_inputs("inverse", y, cond);
    if constexpr (requires(const Derived& d) { d.inverse_impl(y, cond, policy, opt); })
      return self().inverse_impl(y, cond, policy, opt);
    else
      return self().inverse_impl(y, cond, P::compute, opt);
  }

 protected:
  template <LogDetPolicy P, class Ctx>
  FlowOut<B> run_forward(const Tensor<B>& x, Ctx* ctx, const Tensor<B>& cond, const P& policy) const {
    check_inputs("forward", x, cond);
    FlowOut<B> out;
    // Layers that use the policy object (stochastic estimates, compositions handing it on) take it; the others
    // get whether to compute the log-det.
    if constexpr (requires(const Derived& d) { d.forward_impl(x, ctx, cond, policy); })
      out = self().forward_impl(x, ctx, cond, policy);
    else
      out = self().forward_impl(x, ctx, cond, P::compute);
    if constexpr (std::is_same_v<P, logdet::BruteForce>)
      out.logdet = from_host<B>(slogdet_rows(jacobian_by_backward(self(), x, cond), x.rows(), x.cols()));
    return out;
  }
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
