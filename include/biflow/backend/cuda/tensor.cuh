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

namespace biflow {

namespace gpu {
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw error(detail::cat("CUDA error in ", what, ": ", cudaGetErrorString(e)));
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw error(detail::cat("cuBLAS error in ", what, ": status ", int(s)));
}

/// The stream and cuBLAS handle work is issued on. One per host thread, created on first use.
/// (An explicit, user-owned context passed through the API is planned with the full CUDA backend.)
class Context {
 public:
  Context() {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cublasCreate(&blas_), "cublasCreate");
    check(cublasSetStream(blas_, stream_), "cublasSetStream");
  }
  ~Context() {
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  void synchronize() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t stream_{};
  cublasHandle_t blas_{};
};

inline Context& context() {
  thread_local Context ctx;
  return ctx;
}

/// Number of usable CUDA devices (0 when there is no driver or no GPU; never throws).
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
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
    gpu::check(cudaMemcpy(p, v.data(), v.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  long size() const { return n_; }
  const std::int32_t* data() const { return d_.get(); }

 private:
  std::shared_ptr<std::int32_t> d_;  // immutable after construction, so sharing is safe
  long n_ = 0;
};

/// Explicit upload.
template <class B>
  requires is_cuda<B>::value
Tensor<B> from_host(const HostMatrix<typename B::scalar>& m) {
  Tensor<B> t(m.rows(), m.cols(), uninit);
  if (t.size() > 0)
    gpu::check(cudaMemcpyAsync(t.data(), m.data(), t.bytes(), cudaMemcpyHostToDevice, gpu::context().stream()),
                "upload");
  gpu::context().synchronize();  // m may die right after the call
  return t;
}
/// Explicit download (synchronises the stream).
template <class B>
  requires is_cuda<B>::value
HostMatrix<typename B::scalar> to_host(const Tensor<B>& t) {
  HostMatrix<typename B::scalar> m(t.rows(), t.cols());
  if (t.size() > 0)
    gpu::check(cudaMemcpyAsync(m.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost, gpu::context().stream()),
                "download");
  gpu::context().synchronize();
  return m;
}

}  // namespace biflow
