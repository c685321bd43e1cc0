#pragma once
// Tensor<B>: the one shape biflow computes on. 2-D, row-major, rows = samples (x tokens), cols = features.
#include "../core/config.hpp"  // before Eigen: EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/errors.hpp"
#include "cpu/arena.hpp"
#include "tags.hpp"

namespace biflow {

/// Host-side matrix type used for explicit transfers and for everything that is not hot
/// (data loading, checks, plotting).
template <class T>
using HostMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Tag for constructing a tensor whose contents will be overwritten (skips the zero fill).
struct uninit_t {};
inline constexpr uninit_t uninit{};

namespace detail {
inline void check_reshape(long r, long c, long rows, long cols) {
  if (rows < 0 || cols < 0 || rows * cols != r * c)
    throw shape_error(cat("reshape: cannot view a ", r, "x", c, " tensor as ", rows, "x", cols,
                          " (element counts differ)"));
}
}  // namespace detail

template <class B>
class Tensor {
  static_assert(dependent_false<B>,
                "biflow::Tensor<B>: no tensor for this backend. Use Cpu<float>, Cpu<double>, or Cuda<float> "
                "(the latter only in .cu files compiled by nvcc), or specialise biflow::Tensor<B> for your own "
                "backend (docs/backends.md).");
};

template <class B>
class Indices {
  static_assert(dependent_false<B>,
                "biflow::Indices<B>: no index buffer for this backend; specialise biflow::Indices<B> for your own "
                "backend (docs/backends.md).");
};

namespace detail {
inline void check_view_bind(long offset, long rows, long cols, long size) {
  if (offset < 0 || rows < 0 || cols < 0 || offset + rows * cols > size)
    throw shape_error(cat("bind_view: a ", rows, "x", cols, " view at element ", offset,
                          " does not fit in a buffer of ", size, " elements"));
}
inline void check_view_assign(long r, long c, long rows, long cols) {
  if (r != rows || c != cols)
    throw shape_error(cat("assignment to a tensor view: expected a ", r, "x", c, " tensor (the view's shape), got ",
                          rows, "x", cols));
}
}  // namespace detail

/// Cpu tensor: owns an Eigen row-major matrix, or a buffer of the cpu::Arena in scope when it was made
/// (cpu/arena.hpp: what trainers use so that a step allocates nothing after warm-up), or is a *view* of part of
/// another tensor's buffer (bind_view: how a model's parameters and gradients live in one flat buffer,
/// train/flat_parameters.hpp). Copies are deep and own their data. A view stays bound for life: assigning to it
/// (copy or move) writes the values into the viewed buffer (same shape, else shape_error), and moving *from* it
/// copies, so std::swap exchanges contents.
template <class T>
class Tensor<Cpu<T>> {
 public:
  using backend = Cpu<T>;
  using scalar = T;
  using Map = Eigen::Map<HostMatrix<T>>;
  using ConstMap = Eigen::Map<const HostMatrix<T>>;
  Tensor() = default;
  Tensor(long rows, long cols) : Tensor(rows, cols, uninit) {
    if (size() > 0) std::fill_n(data(), size(), T(0));
  }
  Tensor(long rows, long cols, uninit_t) { allocate(rows, cols); }
  explicit Tensor(HostMatrix<T> m) : m_(std::move(m)) {}
  Tensor(const Tensor& o) {
    allocate(o.rows(), o.cols());
    copy_from(o);
  }
  // noexcept so that containers move rather than copy; moving from a view copies (an allocation failure there
  // terminates, as any allocation failure inside a noexcept move would).
  Tensor(Tensor&& o) noexcept {
    if (o.view_) {
      allocate(o.rows(), o.cols());
      copy_from(o);
    } else {
      take(std::move(o));
    }
  }
  Tensor& operator=(const Tensor& o) {
    if (this == &o) return *this;
    if (view_) {
      detail::check_view_assign(rows(), cols(), o.rows(), o.cols());
    } else if (rows() != o.rows() || cols() != o.cols()) {
      if (size() != o.size()) allocate(o.rows(), o.cols());
      else reshape(o.rows(), o.cols());  // same size: the buffer is kept
    }
    copy_from(o);
    return *this;
  }
  Tensor& operator=(Tensor&& o) {
    if (this == &o) return *this;
    if (view_ || o.view_) return *this = static_cast<const Tensor&>(o);
    take(std::move(o));
    return *this;
  }
  ~Tensor() = default;

  long rows() const { return view_ ? vr_ : pool_ ? pr_ : m_.rows(); }
  long cols() const { return view_ ? vc_ : pool_ ? pc_ : m_.cols(); }
  long size() const { return rows() * cols(); }
  bool empty() const { return size() == 0; }
  /// Reinterprets the row-major buffer as rows x cols (same element count; no copy).
  void reshape(long rows, long cols) {
    detail::check_reshape(this->rows(), this->cols(), rows, cols);
    if (view_) vr_ = rows, vc_ = cols;
    else if (pool_) pr_ = rows, pc_ = cols;
    else m_.resize(rows, cols);  // same size: Eigen keeps the buffer and only changes the dimensions
  }
  T* data() { return view_ ? view_ : pool_ ? static_cast<T*>(pool_.get()) : m_.data(); }
  const T* data() const { return view_ ? view_ : pool_ ? static_cast<const T*>(pool_.get()) : m_.data(); }
  /// Direct Eigen access; exists on Cpu only (backend code and tests use it, layers must not).
  Map eigen() { return Map(data(), rows(), cols()); }
  ConstMap eigen() const { return ConstMap(data(), rows(), cols()); }

  /// Makes this tensor a rows x cols view of `storage`'s elements [offset, offset + rows·cols); the view keeps
  /// the storage alive. What this tensor held before is dropped (copy it in first to keep it).
  void bind_view(std::shared_ptr<Tensor> storage, long offset, long rows, long cols) {
    detail::check_view_bind(offset, rows, cols, storage->size());
    m_ = HostMatrix<T>();
    pool_.release();
    view_ = storage->data() + offset;
    vr_ = rows;
    vc_ = cols;
    keep_ = std::move(storage);
  }
  bool is_view() const { return view_ != nullptr; }

 private:
  /// Fresh rows x cols storage: from the arena in scope on this thread, else the heap.
  void allocate(long rows, long cols) {
    if (rows < 0 || cols < 0)
      throw shape_error(detail::cat("Tensor: cannot make a ", rows, "x", cols, " tensor (negative size)"));
    cpu::detail::PooledBuffer b = cpu::detail::pooled_buffer(std::size_t(rows) * std::size_t(cols) * sizeof(T));
    if (b) {
      m_ = HostMatrix<T>();
      pool_ = std::move(b);
      pr_ = rows;
      pc_ = cols;
    } else {
      pool_.release();
      m_.resize(rows, cols);
    }
  }
  void copy_from(const Tensor& o) {
    if (size() > 0) std::copy_n(o.data(), size(), data());
  }
  /// Takes o's storage (neither is a view).
  void take(Tensor&& o) noexcept {
    m_ = std::move(o.m_);
    pool_ = std::move(o.pool_);
    pr_ = std::exchange(o.pr_, 0);
    pc_ = std::exchange(o.pc_, 0);
  }

  HostMatrix<T> m_;
  cpu::detail::PooledBuffer pool_;  // non-empty: the data is this arena buffer (pr_ x pc_), m_ is empty
  long pr_ = 0, pc_ = 0;
  T* view_ = nullptr;  // non-null: a view into keep_'s buffer
  long vr_ = 0, vc_ = 0;
  std::shared_ptr<Tensor> keep_;
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

/// Explicit host -> backend copy (a plain copy on Cpu; an upload on Cuda). A backend provides it as
/// `backend_from_host(backend_tag<B>, const HostMatrix<scalar>&)`.
template <class B>
Tensor<B> from_host(const HostMatrix<typename B::scalar>& m) {
  return backend_from_host(backend_tag<B>{}, m);
}
template <class T>
Tensor<Cpu<T>> backend_from_host(backend_tag<Cpu<T>>, const HostMatrix<T>& m) {
  Tensor<Cpu<T>> t(m.rows(), m.cols(), uninit);
  t.eigen() = m;
  return t;
}
/// Explicit backend -> host copy (a plain copy on Cpu; a download on Cuda).
template <class T>
HostMatrix<T> to_host(const Tensor<Cpu<T>>& t) {
  return HostMatrix<T>(t.eigen());
}

/// Index buffer (gathers, permutations) on the backend; provided as `backend_make_indices(backend_tag<B>, v)`.
template <class B>
Indices<B> make_indices(std::vector<std::int32_t> v) {
  return backend_make_indices(backend_tag<B>{}, std::move(v));
}

/// Bytes a backend's tensors occupy now and at their peak since start or the last reset_peak_memory<B>(); -1
/// where the backend cannot tell. Cpu: the process's resident set; Cuda: the device memory pool.
struct MemoryUsage {
  long long current = -1, peak = -1;
};
/// Returns when the work issued so far on B is done (no-op on Cpu): time GPU work between two of these.
template <class B>
void synchronize() {
  backend_synchronize(backend_tag<B>{});
}
template <class B>
MemoryUsage memory_usage() {
  return backend_memory_usage(backend_tag<B>{});
}
/// Starts a new peak at the current usage; false where the backend cannot reset it.
template <class B>
bool reset_peak_memory() {
  return backend_reset_peak_memory(backend_tag<B>{});
}

/// Copy of t viewed as rows x cols.
template <class B>
Tensor<B> reshaped(Tensor<B> t, long rows, long cols) {
  t.reshape(rows, cols);
  return t;
}

/// A (possibly batched) strided matrix inside a tensor's buffer, for gemm_batched: matrix (i, j) of the
/// batch starts at offset + i * outer + j * inner and holds rows x cols elements with row pitch ld.
/// Attention reads heads straight out of packed [q | k | v] rows this way, without copies.
struct MatView {
  long offset = 0, rows = 0, cols = 0, ld = 0, outer = 0, inner = 0;
};

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

/// Throws unless every element a batched view touches lies inside a buffer of `size` elements.
inline void check_view(const char* where, const char* name, const MatView& v, long n_outer, long n_inner,
                       long size) {
  if (v.rows <= 0 || v.cols <= 0 || n_outer <= 0 || n_inner <= 0) return;
  const long last = v.offset + (n_outer - 1) * v.outer + (n_inner - 1) * v.inner + (v.rows - 1) * v.ld + v.cols;
  if (v.offset < 0 || v.ld < v.cols || v.outer < 0 || v.inner < 0 || last > size)
    throw shape_error(cat(where, ": view of ", name, " (offset ", v.offset, ", ", v.rows, "x", v.cols, ", ld ", v.ld,
                          ", batch ", n_outer, "x", n_inner, " with strides ", v.outer, ", ", v.inner,
                          ") reaches element ", last, " of a tensor with ", size, " elements"));
}
/// Shapes of a batched C = op(A) op(B): inner and outer dimensions must agree.
inline void check_batched_gemm(const MatView& a, bool ta, const MatView& b, bool tb, const MatView& c) {
  const long m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols;
  const long kb = tb ? b.cols : b.rows, n = tb ? b.rows : b.cols;
  if (k != kb || c.rows != m || c.cols != n)
    throw shape_error(cat("gemm_batched: op(A) is ", m, "x", k, ", op(B) is ", kb, "x", n, ", C is ", c.rows, "x",
                          c.cols));
}

/// Throws unless `rows` splits into groups of `group` rows, one per row of a `vrows`-row tensor.
inline void check_groups(const char* where, long rows, long vrows, long group) {
  if (group <= 0 || rows != vrows * group)
    throw shape_error(cat(where, ": ", rows, " rows do not form ", vrows, " groups of ", group));
}

/// Throws unless out is one row with a column i (per-tensor results such as sum_sq_into).
template <class B>
void check_slot(const char* where, const Tensor<B>& out, long i) {
  if (out.rows() != 1 || i < 0 || i >= out.cols())
    throw shape_error(cat(where, ": slot ", i, " of a ", out.rows(), "x", out.cols(), " tensor (expected 1 x n, i < n)"));
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
