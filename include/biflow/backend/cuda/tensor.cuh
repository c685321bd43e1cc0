#pragma once
// Cuda tensor: a device buffer (row-major, rows x cols) allocated stream-ordered from the CUDA memory pool.
// Host <-> device copies happen only in from_host / to_host (explicit), never inside a layer.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "../tensor.hpp"
#include "device.cuh"

namespace biflow {

namespace gpu {
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw error(detail::cat("CUDA error in ", what, ": ", cudaGetErrorString(e)));
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw error(detail::cat("cuBLAS error in ", what, ": status ", int(s)));
}

/// GEMM arithmetic. fp32: exact IEEE float products (the default; matches Cpu<float> to rounding). tf32: cuBLAS
/// may use TF32 tensor cores (10-bit mantissa inputs, fp32 accumulation; ~1e-3 relative error per product) —
/// opt in for speed once a model trains.
/// bf16: GEMM operands are rounded to bfloat16 (8-bit mantissa) inside cuBLAS (cublasGemmEx with
/// CUBLAS_COMPUTE_32F_FAST_16BF), products accumulated in fp32; tensors stay fp32 in memory. ~4e-3 relative error
/// per product: its own equality tolerance.
enum class MathMode { fp32, tf32, bf16 };

namespace detail {
/// A stream shared by its context and every tensor allocated on it: a tensor is freed on the stream it was
/// allocated on (stream order makes the free wait for the work queued there), and the stream is destroyed only
/// when the context and the last such tensor are gone, so a tensor may outlive the context that made it.
struct StreamOwner {
  cudaStream_t stream{};
  StreamOwner() { check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~StreamOwner() {
    cudaStreamSynchronize(stream);  // pending frees and kernels finish before the stream goes; errors at exit ignored
    cudaStreamDestroy(stream);
  }
  StreamOwner(const StreamOwner&) = delete;
  StreamOwner& operator=(const StreamOwner&) = delete;
};
using StreamRef = std::shared_ptr<StreamOwner>;

/// The default stream-ordered pool of the current device keeps what it has reserved (release threshold = max)
/// instead of returning it to the driver at every synchronisation and mapping it again in the next step.
inline void keep_pool_reserved() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaMemPool_t pool{};
  check(cudaDeviceGetDefaultMemPool(&pool, dev), "cudaDeviceGetDefaultMemPool");
  std::uint64_t keep = ~std::uint64_t(0);
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
}
}  // namespace detail

/// A stream, a cuBLAS handle bound to it, and the GEMM math mode: everything biflow issues goes to the context
/// that is current on the calling host thread. Each thread has a default one (created on first use); bind your
/// own with ScopedContext to run independent work on separate streams. A tensor is freed on the stream it was
/// allocated on; a tensor used from another context's stream must be synchronised before it dies.
class Context {
 public:
  explicit Context(MathMode mode = MathMode::fp32) : owner_(std::make_shared<detail::StreamOwner>()) {
    detail::keep_pool_reserved();
    check(cublasCreate(&blas_), "cublasCreate");
    check(cublasSetStream(blas_, owner_->stream), "cublasSetStream");
    set_math(mode);
  }
  ~Context() {
    if (ones_.data) cudaFreeAsync(ones_.data, owner_->stream);
    // Work queued here finishes before the context goes: tensors that outlive it may be used on another stream.
    cudaStreamSynchronize(owner_->stream);
    cublasDestroy(blas_);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  cudaStream_t stream() const { return owner_->stream; }
  const detail::StreamRef& stream_ref() const { return owner_; }
  cublasHandle_t blas() const { return blas_; }
  void synchronize() const { check(cudaStreamSynchronize(owner_->stream), "cudaStreamSynchronize"); }
  MathMode math() const { return mode_; }
  /// Host <-> device traffic issued through this context: tensor uploads (from_host, index buffers), downloads
  /// (to_host) and scalar reads (sum, sum_sq, all_finite). Tests use it to prove a training step moves no tensor.
  struct Transfers {
    long uploads = 0, downloads = 0, scalar_reads = 0;
  };
  Transfers& transfers() { return transfers_; }
  void set_math(MathMode m) {
    cublasMath_t cm = CUBLAS_DEFAULT_MATH;
    if (m == MathMode::tf32) cm = CUBLAS_TF32_TENSOR_OP_MATH;
    check(cublasSetMathMode(blas_, cm), "cublasSetMathMode");
    mode_ = m;
  }
  /// A device vector of ones kept per context (grown on demand): column sums are a GEMV against it.
  struct Ones {
    float* data = nullptr;
    long size = 0;
  };
  Ones& ones_cache() { return ones_; }

 private:
  detail::StreamRef owner_;
  cublasHandle_t blas_{};
  MathMode mode_ = MathMode::fp32;
  Transfers transfers_;
  Ones ones_;
};

namespace detail {
inline Context*& current_context() {
  thread_local Context* c = nullptr;
  return c;
}
}  // namespace detail

/// The context current on this host thread: the innermost ScopedContext, else the thread's default.
inline Context& context() {
  if (Context* c = detail::current_context()) return *c;
  thread_local Context fallback;
  return fallback;
}

/// Makes ctx current on this thread until the scope ends (nests; restores the previous one).
class ScopedContext {
 public:
  explicit ScopedContext(Context& ctx) : prev_(std::exchange(detail::current_context(), &ctx)) {}
  ~ScopedContext() { detail::current_context() = prev_; }
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;

 private:
  Context* prev_;
};

/// Sets the current context's GEMM math mode until the scope ends (the TF32 opt-in).
class MathScope {
 public:
  explicit MathScope(MathMode m) : ctx_(context()), prev_(ctx_.math()) { ctx_.set_math(m); }
  ~MathScope() {
    try {
      ctx_.set_math(prev_);
    } catch (...) {  // a destructor must not throw; a failing cuBLAS handle fails the next call loudly anyway
    }
  }
  MathScope(const MathScope&) = delete;
  MathScope& operator=(const MathScope&) = delete;

 private:
  Context& ctx_;
  MathMode prev_;
};

/// Bytes of device memory currently allocated by biflow tensors and the high-water mark since the last reset,
/// read from the stream-ordered memory pool they come from.
struct PoolUsage {
  std::size_t used = 0, peak = 0;
};
inline PoolUsage pool_usage() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaMemPool_t pool{};
  check(cudaDeviceGetDefaultMemPool(&pool, dev), "cudaDeviceGetDefaultMemPool");
  std::uint64_t used = 0, peak = 0;
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used), "cudaMemPoolGetAttribute");
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &peak), "cudaMemPoolGetAttribute");
  return {std::size_t(used), std::size_t(peak)};
}
inline void reset_pool_peak() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaMemPool_t pool{};
  check(cudaDeviceGetDefaultMemPool(&pool, dev), "cudaDeviceGetDefaultMemPool");
  std::uint64_t zero = 0;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), "cudaMemPoolSetAttribute");
}

}  // namespace gpu

/// Cuda tensor: a device buffer it owns, or a view of part of another tensor's buffer (bind_view; see the Cpu
/// twin for the semantics: copies own, assigning to a view writes into it, moving from a view copies).
template <class T>
class Tensor<Cuda<T>> {
 public:
  using backend = Cuda<T>;
  using scalar = T;
  Tensor() = default;
  Tensor(long rows, long cols) : Tensor(rows, cols, uninit) {
    if (size() > 0)
      gpu::check(cudaMemsetAsync(d_, 0, bytes(), gpu::context().stream()), "cudaMemsetAsync");
  }
  Tensor(long rows, long cols, uninit_t) : r_(rows), c_(cols) {
    if (size() > 0) {
      gpu::Context& ctx = gpu::context();
      gpu::check(cudaMallocAsync(reinterpret_cast<void**>(&d_), bytes(), ctx.stream()), "cudaMallocAsync");
      s_ = ctx.stream_ref();
    }
  }
  Tensor(const Tensor& o) : Tensor(o.r_, o.c_, uninit) { copy_from(o); }
  Tensor(Tensor&& o) noexcept {
    if (o.keep_) {
      *this = Tensor(static_cast<const Tensor&>(o));
      return;
    }
    d_ = std::exchange(o.d_, nullptr);
    r_ = std::exchange(o.r_, 0);
    c_ = std::exchange(o.c_, 0);
    s_ = std::move(o.s_);
  }
  Tensor& operator=(const Tensor& o) {
    if (this == &o) return *this;
    if (keep_) {
      detail::check_view_assign(r_, c_, o.r_, o.c_);
      copy_from(o);
      return *this;
    }
    return *this = Tensor(o);
  }
  Tensor& operator=(Tensor&& o) noexcept(false) {
    if (this == &o) return *this;
    if (keep_ || o.keep_) return *this = static_cast<const Tensor&>(o);
    std::swap(d_, o.d_);
    std::swap(r_, o.r_);
    std::swap(c_, o.c_);
    std::swap(s_, o.s_);
    return *this;
  }
  /// Frees on the allocating stream (never the current one: another thread's or context's stream would race the
  /// work still queued on this one) and creates nothing, so it cannot throw. A view frees nothing.
  ~Tensor() {
    if (d_ && !keep_) cudaFreeAsync(d_, s_->stream);
  }
  long rows() const { return r_; }
  long cols() const { return c_; }
  long size() const { return r_ * c_; }
  bool empty() const { return size() == 0; }
  /// Reinterprets the row-major buffer as rows x cols (same element count; no copy).
  void reshape(long rows, long cols) {
    detail::check_reshape(r_, c_, rows, cols);
    r_ = rows;
    c_ = cols;
  }
  T* data() { return d_; }
  const T* data() const { return d_; }
  std::size_t bytes() const { return std::size_t(size()) * sizeof(T); }
  /// The stream the buffer was allocated on and will be freed on (null for an empty tensor).
  cudaStream_t stream() const { return s_ ? s_->stream : nullptr; }

  /// Makes this tensor a rows x cols view of `storage`'s elements [offset, offset + rows·cols) (see the Cpu twin).
  void bind_view(std::shared_ptr<Tensor> storage, long offset, long rows, long cols) {
    detail::check_view_bind(offset, rows, cols, storage->size());
    Tensor().swap_raw(*this);  // drop (free) what this tensor owned
    d_ = storage->data() + offset;
    r_ = rows;
    c_ = cols;
    s_ = storage->s_;
    keep_ = std::move(storage);
  }
  bool is_view() const { return keep_ != nullptr; }

 private:
  void copy_from(const Tensor& o) {
    if (size() > 0)
      gpu::check(cudaMemcpyAsync(d_, o.d_, bytes(), cudaMemcpyDeviceToDevice, gpu::context().stream()),
                 "cudaMemcpyAsync");
  }
  void swap_raw(Tensor& o) noexcept {
    std::swap(d_, o.d_);
    std::swap(r_, o.r_);
    std::swap(c_, o.c_);
    std::swap(s_, o.s_);
    std::swap(keep_, o.keep_);
  }
  T* d_ = nullptr;
  long r_ = 0, c_ = 0;
  gpu::detail::StreamRef s_;  // the stream d_ was allocated on
  std::shared_ptr<Tensor> keep_;  // non-null: a view into keep_'s buffer (d_ is not owned)
};

template <class T>
class Indices<Cuda<T>> {
 public:
  Indices() = default;
  explicit Indices(const std::vector<std::int32_t>& v) : n_(long(v.size())) {
    if (n_ == 0) return;
    std::int32_t* p = nullptr;
    gpu::check(cudaMalloc(reinterpret_cast<void**>(&p), v.size() * sizeof(std::int32_t)), "cudaMalloc");
    d_ = std::shared_ptr<std::int32_t>(p, [](std::int32_t* q) { cudaFree(q); });
    // On the context's stream, then synchronised: a plain cudaMemcpy from pageable memory may return before the
    // DMA lands, and the non-blocking stream would not wait for it.
    gpu::check(cudaMemcpyAsync(p, v.data(), v.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                               gpu::context().stream()),
               "cudaMemcpyAsync");
    gpu::context().synchronize();
    ++gpu::context().transfers().uploads;
  }
  long size() const { return n_; }
  const std::int32_t* data() const { return d_.get(); }

 private:
  std::shared_ptr<std::int32_t> d_;  // immutable after construction, so sharing is safe
  long n_ = 0;
};

/// Explicit upload.
template <class T>
Tensor<Cuda<T>> backend_from_host(backend_tag<Cuda<T>>, const HostMatrix<T>& m) {
  Tensor<Cuda<T>> t(m.rows(), m.cols(), uninit);
  if (t.size() > 0)
    gpu::check(cudaMemcpyAsync(t.data(), m.data(), t.bytes(), cudaMemcpyHostToDevice, gpu::context().stream()),
                "upload");
  gpu::context().synchronize();  // m may die right after the call
  ++gpu::context().transfers().uploads;
  return t;
}
/// Explicit download (synchronises the stream).
template <class T>
HostMatrix<T> to_host(const Tensor<Cuda<T>>& t) {
  HostMatrix<T> m(t.rows(), t.cols());
  if (t.size() > 0)
    gpu::check(cudaMemcpyAsync(m.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost, gpu::context().stream()),
                "download");
  gpu::context().synchronize();
  ++gpu::context().transfers().downloads;
  return m;
}

}  // namespace biflow
