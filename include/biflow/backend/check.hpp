#pragma once
// check_backend<B>(): is B a complete backend? One compile-time sentence per missing primitive, so that a new
// backend fails here, naming what to write, and not deep inside attention. Every trainable parameter and every
// flow layer checks its backend (nn/parameter.hpp, flow/flow_layer.hpp).
#include <cstdint>
#include <vector>

#include "../core/config.hpp"
#include "../core/rng.hpp"
#include "functors.hpp"
#include "tensor.hpp"

namespace biflow {

namespace detail {
/// A for_each functor of any arity (only its call is checked).
struct AnyUpdate {
  template <class... T>
  BIFLOW_HOST_DEVICE void operator()(T&...) const {}
};
}  // namespace detail

/// True when B is a complete backend; otherwise a static_assert per missing primitive. The primitives take and
/// return Tensor<B> (found by argument-dependent lookup: define them in B's namespace or in biflow); those with no
/// tensor argument take a backend_tag<B> first.
template <class B>
consteval bool check_backend() {
  static_assert(Backend<B>,
                "check_backend<B>: B is not a declared backend. Specialise biflow::backend_traits<B> with "
                "`static constexpr bool declared = true;` and give B `using scalar = float or double;` and "
                "`static constexpr const char* name`.");
  if constexpr (Backend<B>) {
    using T = typename B::scalar;
    using Ten = Tensor<B>;
    static_assert(requires(Ten t, const Ten& c) {
      { t.rows() } -> std::convertible_to<long>;
      { t.cols() } -> std::convertible_to<long>;
      { t.size() } -> std::convertible_to<long>;
      { t.empty() } -> std::convertible_to<bool>;
      t.reshape(1L, 1L);
      Ten(1L, 1L);
      Ten(1L, 1L, uninit);
      Ten(c);
    }, "check_backend<B>: Tensor<B> needs rows(), cols(), size(), empty(), reshape(rows, cols), a zero-filling "
       "constructor (rows, cols), an uninitialised one (rows, cols, uninit) and copies.");
    static_assert(requires(std::vector<std::int32_t> v) { { backend_make_indices(backend_tag<B>{}, v) } -> std::same_as<Indices<B>>; },
                  "check_backend<B>: missing primitive backend_make_indices(backend_tag<B>, std::vector<int32_t>) "
                  "-> Indices<B> (with Indices<B>::size()).");
    static_assert(requires(const HostMatrix<T>& m) { { backend_from_host(backend_tag<B>{}, m) } -> std::same_as<Ten>; },
                  "check_backend<B>: missing primitive backend_from_host(backend_tag<B>, const HostMatrix<scalar>&) "
                  "-> Tensor<B>.");
    static_assert(requires(const Ten& a) { { to_host(a) } -> std::same_as<HostMatrix<T>>; },
                  "check_backend<B>: missing primitive to_host(const Tensor<B>&) -> HostMatrix<scalar>.");
    static_assert(requires { backend_synchronize(backend_tag<B>{}); },
                  "check_backend<B>: missing primitive backend_synchronize(backend_tag<B>).");
    static_assert(requires { { backend_memory_usage(backend_tag<B>{}) } -> std::same_as<MemoryUsage>; },
                  "check_backend<B>: missing primitive backend_memory_usage(backend_tag<B>) -> MemoryUsage.");
    static_assert(requires { { backend_reset_peak_memory(backend_tag<B>{}) } -> std::same_as<bool>; },
                  "check_backend<B>: missing primitive backend_reset_peak_memory(backend_tag<B>) -> bool.");
    static_assert(requires(const Ten& a, Ten& c, T s) { gemm(a, false, a, true, c, s, s); },
                  "check_backend<B>: missing primitive gemm(const Tensor<B>& a, bool trans_a, const Tensor<B>& b, "
                  "bool trans_b, Tensor<B>& c, scalar alpha, scalar beta): c = alpha op(a) op(b) + beta c.");
    static_assert(requires(const Ten& a, Ten& c, const MatView& v, T s) {
      gemm_batched(a, v, false, a, v, true, c, v, 1L, 1L, s, s);
    }, "check_backend<B>: missing primitive gemm_batched(a, MatView va, bool ta, b, MatView vb, bool tb, c, "
       "MatView vc, long n_outer, long n_inner, scalar alpha, scalar beta).");
    static_assert(requires(const Ten& a, Ten& c) {
      map(c, fn::Copy{}, a);
      map(c, fn::Add{}, a, a);
      map(c, fn::Add{}, c, a);
    }, "check_backend<B>: missing primitive map(Tensor<B>& out, F f, const Tensor<B>&... in): out = f(in...) "
       "elementwise with broadcasting of size-1 dimensions, for any functor F of fn::.");
    static_assert(requires(Ten& a) { for_each(detail::AnyUpdate{}, a, a, a); },
                  "check_backend<B>: missing primitive for_each(F f, Tensor<B>& first, Tensor<B>&... rest): "
                  "f(first[i], rest[i]...) on mutable references.");
    static_assert(requires(const Ten& a, Ten& c, T s) {
      { row_sum(a) } -> std::same_as<Ten>;
      col_sum(a, c, s);
      { sum(a) } -> std::convertible_to<T>;
      { sum_sq(a) } -> std::convertible_to<T>;
      sum_sq_into(a, c, 0L);
      { all_finite(a) } -> std::convertible_to<bool>;
    }, "check_backend<B>: missing a reduction: row_sum(x) -> Tensor<B>, col_sum(x, out, scalar beta), sum(x), "
       "sum_sq(x), sum_sq_into(x, out, long slot), all_finite(x) -> bool.");
    static_assert(requires(Ten& a, T s) {
      set_zero(a);
      fill(a, s);
    }, "check_backend<B>: missing primitive set_zero(Tensor<B>&) or fill(Tensor<B>&, scalar).");
    static_assert(requires(const Ten& a, Ten& c, const Indices<B>& idx) {
      { slice_cols(a, 0L, 1L) } -> std::same_as<Ten>;
      { concat_cols(a, a) } -> std::same_as<Ten>;
      { gather_cols(a, idx) } -> std::same_as<Ten>;
      copy_block(a, 0L, 1L, c, 0L, 1L, 1L, 1L);
    }, "check_backend<B>: missing a copy primitive: slice_cols(x, c0, n), concat_cols(a, b), gather_cols(x, "
       "Indices<B>), copy_block(src, src_off, src_ld, dst, dst_off, dst_ld, rows, cols).");
    static_assert(requires(const Ten& a, Ten& c) {
      add_repeat_rows(c, a, 1L);
      { sum_row_groups(a, 1L) } -> std::same_as<Ten>;
    }, "check_backend<B>: missing primitive add_repeat_rows(Tensor<B>& x, const Tensor<B>& v, long group) or "
       "sum_row_groups(const Tensor<B>& x, long group) -> Tensor<B>.");
    static_assert(requires(const Ten& p, Ten& s) {
      softmax_rows(s, true);
      softmax_rows_backward(p, s);
    }, "check_backend<B>: missing primitive softmax_rows(Tensor<B>& s, bool causal) or "
       "softmax_rows_backward(const Tensor<B>& p, Tensor<B>& dp).");
    static_assert(requires(const Ten& x, Ten& y, T eps) {
      layernorm_forward(x, x, x, eps, y, y, y);
      { layernorm_backward(x, x, x, x, x, y, y) } -> std::same_as<Ten>;
    }, "check_backend<B>: missing primitive layernorm_forward(x, gamma, beta, eps, y, mean, rstd) or "
       "layernorm_backward(x, gamma, mean, rstd, dy, dgamma, dbeta) -> dx.");
    static_assert(requires(Ten& x, Rng& rng, T s) {
      fill_normal(x, rng, s, s);
      fill_uniform(x, rng, s, s);
    }, "check_backend<B>: missing primitive fill_normal(Tensor<B>&, Rng&, scalar mean, scalar stddev) or "
       "fill_uniform(Tensor<B>&, Rng&, scalar lo, scalar hi).");
    static_assert(requires(const Ten& a) { { inverse(a) } -> std::same_as<Ten>; },
                  "check_backend<B>: missing primitive inverse(const Tensor<B>& square) -> Tensor<B>.");
  }
  return true;
}

}  // namespace biflow
