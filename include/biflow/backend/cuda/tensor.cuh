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
enum class MathMode { fp32, tf32 };

/// A stream, a cuBLAS handle bound to it, and the GEMM math mode: everything biflow issues goes to the context
/// that is current on the calling host thread. Each thread has a default one (created on first use); bind your
/// own with ScopedContext to run independent work on separate streams. A tensor is freed on the stream current
/// where it dies: keep tensors inside the context (scope) that made them, or synchronize first.
class Context {
 public:
  explicit Context(MathMode mode = MathMode::fp32) {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cublasCreate(&blas_), "cublasCreate");
    check(cublasSetStream(blas_, stream_), "cublasSetStream");
    set_math(mode);
  }
  ~Context() {
    cudaStreamSynchronize(stream_);  // pending stream-ordered frees and kernels finish before the stream goes
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  void synchronize() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }
  MathMode math() const { return mode_; }
  /// Host <-> device traffic issued through this context: tensor uploads (from_host, index buffers), downloads
  /// (to_host) and scalar reads (sum, sum_sq, all_finite). Tests use it to prove a training step moves no tensor.
  struct Transfers {
    long uploads = 0, downloads = 0, scalar_reads = 0;
  };
  Transfers& transfers() { return transfers_; }
  void set_math(MathMode m) {
    check(cublasSetMathMode(blas_, m == MathMode::tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
          "cublasSetMathMode");
    mode_ = m;
  }

 private:
  cudaStream_t stream_{};
  cublasHandle_t blas_{};
  MathMode mode_ = MathMode::fp32;
  Transfers transfers_;
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
  explicit MathScope(MathMode m) : prev_(context().math()) { context().set_math(m); }
  ~MathScope() { context().set_math(prev_); }
  MathScope(const MathScope&) = delete;
  MathScope& operator=(const MathScope&) = delete;

 private:
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
    if (size() > 0)
      gpu::check(cudaMallocAsync(reinterpret_cast<void**>(&d_), bytes(), gpu::context().stream()), "cudaMallocAsync");
  }
  Tensor(const Tensor& o) : Tensor(o.r_, o.c_, uninit) {
    if (size() > 0)
      gpu::check(cudaMemcpyAsync(d_, o.d_, bytes(), cudaMemcpyDeviceToDevice, gpu::context().stream()),
                  "cudaMemcpyAsync");
  }
  Tensor(Tensor&& o) noexcept : d_(std::exchange(o.d_, nullptr)), r_(std::exchange(o.r_, 0)), c_(std::exchange(o.c_, 0)) {}
  Tensor& operator=(const Tensor& o) {
    if (this != &o) *this = Tensor(o);
    return *this;
  }
  Tensor& operator=(Tensor&& o) noexcept {
    std::swap(d_, o.d_);
    std::swap(r_, o.r_);
    std::swap(c_, o.c_);
    return *this;
  }
  ~Tensor() {
    if (d_) cudaFreeAsync(d_, gpu::context().stream());
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

 private:
  T* d_ = nullptr;
  long r_ = 0, c_ = 0;
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
