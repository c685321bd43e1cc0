#pragma once
// Tensor<B>: the one shape biflow computes on. 2-D, row-major, rows = samples (x tokens), cols = features.
#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "../core/config.hpp"
#include "../core/errors.hpp"
#include "tags.hpp"

namespace biflow {

/// Host-side matrix type used for explicit transfers and for everything that is not hot
/// (data loading, checks, plotting).
template <class T>
using HostMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Tag for constructing a tensor whose contents will be overwritten (skips the zero fill).
struct uninit_t {};
inline constexpr uninit_t uninit{};

template <class B>
class Tensor {
  static_assert(dependent_false<B>,
                "biflow::Tensor<B>: no tensor for this backend. Use Cpu<float>, Cpu<double>, or Cuda<float> "
                "(the latter only in .cu files compiled by nvcc).");
};

template <class B>
class Indices {
  static_assert(dependent_false<B>, "biflow::Indices<B>: no index buffer for this backend.");
};

/// Cpu tensor: owns an Eigen row-major matrix. Copies are deep.
template <class T>
class Tensor<Cpu<T>> {
 public:
  using backend = Cpu<T>;
  using scalar = T;
  Tensor() = default;
  Tensor(long rows, long cols) : m_(rows, cols) { m_.setZero(); }
  Tensor(long rows, long cols, uninit_t) : m_(rows, cols) {}
  explicit Tensor(HostMatrix<T> m) : m_(std::move(m)) {}
  long rows() const { return m_.rows(); }
  long cols() const { return m_.cols(); }
  long size() const { return m_.size(); }
  bool empty() const { return m_.size() == 0; }
  T* data() { return m_.data(); }
  const T* data() const { return m_.data(); }
  /// Direct Eigen access; exists on Cpu only (backend code and tests use it, layers must not).
  HostMatrix<T>& eigen() { return m_; }
  const HostMatrix<T>& eigen() const { return m_; }

 private:
  HostMatrix<T> m_;
};

/// Cpu index buffer (gathers/permutations).
template <class T>
class Indices<Cpu<T>> {
 public:
  Indices() = default;
  explicit Indices(std::vector<std::int32_t> v) : v_(std::move(v)) {}
  long size() const { return static_cast<long>(v_.size()); }
  const std::int32_t* data() const { return v_.data(); }
  const std::vector<std::int32_t>& host() const { return v_; }

 private:
  std::vector<std::int32_t> v_;
};

/// Explicit host -> backend copy (a plain copy on Cpu; an upload on Cuda).
template <class B>
  requires is_cpu<B>::value
Tensor<B> from_host(const HostMatrix<typename B::scalar>& m) {
  return Tensor<B>(m);
}
/// Explicit backend -> host copy (a plain copy on Cpu; a download on Cuda).
template <class B>
  requires is_cpu<B>::value
HostMatrix<typename B::scalar> to_host(const Tensor<B>& t) {
  return t.eigen();
}

/// Shape check with a message naming the tensor, expected and actual shape.
template <class B>
void require_shape(const char* where, const Tensor<B>& t, long rows, long cols) {
  if (t.rows() != rows || t.cols() != cols)
    throw shape_error(detail::cat(where, ": expected a ", rows, "x", cols, " tensor, got ", t.rows(), "x",
                                  t.cols()));
}
template <class B>
void require_cols(const char* where, const Tensor<B>& t, long cols) {
  if (t.cols() != cols)
    throw shape_error(detail::cat(where, ": expected ", cols, " columns (features), got ", t.cols(), " (tensor is ",
                                  t.rows(), "x", t.cols(), ")"));
}

namespace detail {
/// Shape of C = op(A) op(B) for row-major operands; throws shape_error when the inner dimensions differ, or when
/// accumulating (beta != 0) into a C of another shape. Shared by every backend's gemm.
struct GemmShape {
  long m, n, k;
  bool resize_c;
};
template <class B, class T>
GemmShape gemm_shape(const Tensor<B>& a, bool trans_a, const Tensor<B>& b, bool trans_b, const Tensor<B>& c, T beta) {
  const long m = trans_a ? a.cols() : a.rows(), k = trans_a ? a.rows() : a.cols();
  const long kb = trans_b ? b.cols() : b.rows(), n = trans_b ? b.rows() : b.cols();
  if (k != kb) throw shape_error(cat("gemm: inner dimensions differ: op(A) is ", m, "x", k, ", op(B) is ", kb, "x", n));
  const bool resize = c.rows() != m || c.cols() != n;
  if (resize && beta != T(0))
    throw shape_error(cat("gemm: accumulating into a ", c.rows(), "x", c.cols(), " tensor, expected ", m, "x", n));
  return {m, n, k, resize};
}

/// Element strides of an input broadcast to a rows x cols output (0 along a dimension of size 1); throws
/// shape_error naming both shapes when it does not broadcast. Shared by every backend's map.
struct Strides {
  long rs, cs;
};
inline Strides broadcast_strides(const char* where, long in_rows, long in_cols, long rows, long cols) {
  if ((in_rows != rows && in_rows != 1) || (in_cols != cols && in_cols != 1))
    throw shape_error(cat(where, ": cannot broadcast a ", in_rows, "x", in_cols, " tensor to ", rows, "x", cols));
  return {in_rows == 1 ? 0 : in_cols, in_cols == 1 ? 0 : 1};
}

/// Throws unless columns [c0, c0 + n) lie within cols (slice_cols on every backend).
inline void check_col_range(long c0, long n, long cols) {
  if (c0 < 0 || n < 0 || c0 + n > cols)
    throw shape_error(cat("slice_cols: columns [", c0, ", ", c0 + n, ") out of range for ", cols, " columns"));
}

/// col_sum's output contract on every backend: accumulating (beta != 0) needs a 1 x cols output; otherwise a
/// wrongly shaped output is replaced. Returns true when out must be (re)allocated.
template <class B, class T>
bool col_sum_needs_output(const Tensor<B>& out, long cols, T beta) {
  if (out.rows() == 1 && out.cols() == cols) return false;
  if (beta != T(0)) require_shape("col_sum", out, 1, cols);
  return true;
}
}  // namespace detail

}  // namespace biflow
