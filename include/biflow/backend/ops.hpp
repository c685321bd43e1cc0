#pragma once
// Backend primitives: the only layer of biflow that knows Eigen or CUDA. Layers call these names
// unqualified; the overload for the tensor's backend is picked at compile time.
//
//   gemm, gemm_batched, map, for_each, row_sum, col_sum, sum, sum_sq, sum_sq_into, all_finite, set_zero, fill, slice_cols,
//   concat_cols, gather_cols, copy_block, add_repeat_rows, sum_row_groups, softmax_rows(_backward),
//   layernorm_forward/backward, fill_normal, fill_uniform, inverse,
//   make_indices, from_host, to_host, synchronize, memory_usage, reset_peak_memory
// check_backend<B>() (check.hpp) lists them with their signatures; a new backend provides each one.
// Optional: packed_map / packed_map_grad (element-wise maps with P parameters per element), needed only by the
// spline layers (flow/spline.hpp), which say so at compile time.
//
// Below: backend-independent conveniences built only from those primitives.
#include <algorithm>

#include "cpu/ops.hpp"
#include "functors.hpp"
#if defined(__CUDACC__)
#include "cuda/ops.cuh"
#endif
#include "check.hpp"

namespace biflow {

/// New tensor = f(ins...) elementwise, shaped as the largest input (others broadcast).
template <class F, class B, class... In>
Tensor<B> zip(F f, const Tensor<B>& a, const In&... in) {
  const long R = std::max({a.rows(), in.rows()...}), C = std::max({a.cols(), in.cols()...});
  Tensor<B> out(R, C, uninit);
  map(out, f, a, in...);
  return out;
}

/// op(A) op(B) as a new tensor.
template <class B>
Tensor<B> matmul(const Tensor<B>& a, bool ta, const Tensor<B>& b, bool tb) {
  Tensor<B> c;
  gemm(a, ta, b, tb, c);
  return c;
}

/// rows copies of the 1 x C row v.
template <class B>
Tensor<B> broadcast_rows(const Tensor<B>& v, long rows) {
  Tensor<B> out(rows, v.cols(), uninit);
  map(out, fn::Copy{}, v);
  return out;
}

/// dst += src (same shape).
template <class B>
void add_inplace(Tensor<B>& dst, const Tensor<B>& src) {
  require_shape("add_inplace", src, dst.rows(), dst.cols());
  map(dst, fn::Add{}, dst, src);
}

/// A rows x 1 tensor filled with v (per-sample log-dets start here).
template <class B>
Tensor<B> constant(long rows, long cols, typename B::scalar v) {
  Tensor<B> t(rows, cols);
  fill(t, v);
  return t;
}

/// Rows [r0, r0 + n) of x.
template <class B>
Tensor<B> slice_rows(const Tensor<B>& x, long r0, long n) {
  if (r0 < 0 || n < 0 || r0 + n > x.rows())
    throw shape_error(detail::cat("slice_rows: rows [", r0, ", ", r0 + n, ") out of range for ", x.rows(), " rows"));
  Tensor<B> y(n, x.cols(), uninit);
  copy_block(x, r0 * x.cols(), x.cols(), y, 0, x.cols(), n, x.cols());
  return y;
}
/// a on top of b (same columns).
template <class B>
Tensor<B> concat_rows(const Tensor<B>& a, const Tensor<B>& b) {
  require_dim("concat_rows", "columns of the second tensor", a.cols(), b.cols());
  Tensor<B> y(a.rows() + b.rows(), a.cols(), uninit);
  copy_block(a, 0, a.cols(), y, 0, a.cols(), a.rows(), a.cols());
  copy_block(b, 0, b.cols(), y, a.size(), b.cols(), b.rows(), b.cols());
  return y;
}

/// n rows of the null label (zeros, last of `features` columns 1), built on the backend: models with a learned
/// "unconditional" label use it for guidance without a host upload.
template <class B>
Tensor<B> null_rows(long n, long features) {
  if (features <= 0) throw shape_error(detail::cat("null_rows: need at least one feature column, got ", features));
  return concat_cols(Tensor<B>(n, features - 1), constant<B>(n, 1, typename B::scalar(1)));
}

/// Host vector (one row) -> backend tensor.
template <class B>
Tensor<B> row_from_host(const std::vector<typename B::scalar>& v) {
  HostMatrix<typename B::scalar> m(1, static_cast<long>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) m(0, static_cast<long>(i)) = v[i];
  return from_host<B>(m);
}

}  // namespace biflow
