#pragma once
// The nn module contract: forward(x, ctx) saves what backward needs in an explicit Context; forward(x) is the
// inference pass and saves nothing; backward(ctx, dy, mode) returns the input gradient and accumulates parameter
// gradients as the GradMode says. No autodiff tape, no hidden state.
#include <concepts>
#include <string>

#include "parameter.hpp"

namespace biflow {

/// An nn module maps a (rows x in_features) tensor to (rows x out_features), row by row.
template <class M>
concept Module = requires(M& m, const M& cm, typename M::Context& ctx, const Tensor<typename M::backend>& x) {
  typename M::backend;
  typename M::Context;
  { cm.forward(x, ctx) } -> std::same_as<Tensor<typename M::backend>>;
  { cm.forward(x) } -> std::same_as<Tensor<typename M::backend>>;
  { m.backward(ctx, x, GradMode::all) } -> std::same_as<Tensor<typename M::backend>>;
  { cm.in_features() } -> std::convertible_to<long>;
  { cm.out_features() } -> std::convertible_to<long>;
  m.visit_parameters(detail::AnyVisitor{}, std::string{});
};

/// Spells out which part of the Module contract M misses (a readable compile error instead of a
/// wall of substitution failures). Call as `static_assert(check_module_contract<M>())`.
/// (Compile time; the numerical checker is testing::check_module(m, x).)
template <class M>
constexpr bool check_module_contract() {
  static_assert(requires { typename M::backend; }, "nn module: missing `using backend = <Cpu<T> or Cuda<T>>;`");
  static_assert(requires { typename M::Context; },
                "nn module: missing `struct Context` (what forward saves for backward)");
  static_assert(requires(const M& cm, typename M::Context& c, const Tensor<typename M::backend>& x) {
    { cm.forward(x, c) } -> std::same_as<Tensor<typename M::backend>>;
  }, "nn module: missing `Tensor<B> forward(const Tensor<B>& x, Context& ctx) const` (the training pass)");
  static_assert(requires(const M& cm, const Tensor<typename M::backend>& x) {
    { cm.forward(x) } -> std::same_as<Tensor<typename M::backend>>;
  }, "nn module: missing `Tensor<B> forward(const Tensor<B>& x) const` (the inference pass: saves nothing; "
     "since 0.3)");
  static_assert(requires(M& m, typename M::Context& c, const Tensor<typename M::backend>& x) {
    { m.backward(c, x, GradMode::all) } -> std::same_as<Tensor<typename M::backend>>;
  }, "nn module: missing `Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = "
     "GradMode::all)` returning dx (the GradMode argument is new in 0.3)");
  static_assert(requires(const M& cm) {
    { cm.in_features() } -> std::convertible_to<long>;
    { cm.out_features() } -> std::convertible_to<long>;
  }, "nn module: missing `long in_features() const` / `long out_features() const`");
  static_assert(requires(M& m) { m.visit_parameters(detail::AnyVisitor{}, std::string{}); },
                "nn module: missing `template <class V> void visit_parameters(V&& v, const std::string& prefix)`");
  return true;
}
template <class M>
[[deprecated("biflow 0.3: the compile-time check is check_module_contract<M>(); testing::check_module(m, x) is the "
             "numerical one")]] constexpr bool check_module() {
  return check_module_contract<M>();
}

/// Input-only backward through a const module. Under GradMode::input_only the contract forbids a backward to
/// write to its module (no gradients, no state), so differentiating through a frozen network needs no mutable one.
template <class M, class B>
Tensor<B> backward_input(const M& m, const typename M::Context& ctx, const Tensor<B>& dy) {
  return const_cast<M&>(m).backward(ctx, dy, GradMode::input_only);
}

}  // namespace biflow
