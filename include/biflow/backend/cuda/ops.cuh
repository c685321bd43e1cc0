#pragma once
// Cuda backend primitives: cuBLAS for GEMM, GEMV (column sums) and batched products, biflow's own kernels for
// elementwise maps, reductions, gathers, LayerNorm and RNG. Same signatures and semantics as backend/cpu/ops.hpp.
// Every reduction is two-stage in a fixed order (no atomics): the same input gives the same bits on every run.
// Temporaries come from the stream-ordered pool (no device-wide synchronisation; the pool keeps its memory).

#include "../../core/config.hpp"  // before Eigen
#include <Eigen/LU>
#include <cmath>

#include "../../core/rng.hpp"
#include "tensor.cuh"

namespace biflow {

namespace cuda_detail {
constexpr int kThreads = 256;
inline int blocks_for(long n) { return int(std::min<long>((n + kThreads - 1) / kThreads, 65535L * 8)); }
inline cudaStream_t stream() { return gpu::context().stream(); }
inline void launched(const char* what) { gpu::check(cudaGetLastError(), what); }

template <class T>
struct Arg {
  const T* p;
  long rs, cs;
};
template <class T, std::size_t N>
struct Args {
  Arg<T> a[N > 0 ? N : 1];
};

template <class T, class F, std::size_t... I>
__global__ void map_kernel(T* out, long R, long C, F f, Args<T, sizeof...(I)> args, std::index_sequence<I...>) {
  const long n = R * C;
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x) {
    const long r = i / C, c = i - r * C;
    out[i] = f(args.a[I].p[r * args.a[I].rs + c * args.a[I].cs]...);
  }
}

template <class T, class F, class... P>
__global__ void for_each_kernel(long n, F f, T* p0, P*... p) {
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x) f(p0[i], p[i]...);
}

// Warp-per-row kernels walk rows with a grid stride: blocks_for caps the grid, and a batch × heads × T
// attention matrix has more rows than the capped grid has warps. The loop bound is the same for the 32 lanes of a
// warp, so the full-mask shuffles inside stay converged.
__device__ inline long first_warp() { return (blockIdx.x * long(blockDim.x) + threadIdx.x) / 32; }
__device__ inline long warp_stride() { return long(gridDim.x) * blockDim.x / 32; }

template <class T>
__global__ void row_sum_kernel(const T* x, T* out, long R, long C) {
  const int lane = threadIdx.x % 32;
  for (long row = first_warp(); row < R; row += warp_stride()) {
    T s = 0;
    for (long c = lane; c < C; c += 32) s += x[row * C + c];
    for (int o = 16; o > 0; o /= 2) s += __shfl_down_sync(0xffffffffu, s, o);
    if (lane == 0) out[row] = s;
  }
}

template <class T>
__global__ void fill_kernel(T* x, long n, T v) {
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x) x[i] = v;
}
/// C = beta C (beta = 0 writes zeros, so NaN garbage in an uninitialised C does not survive).
template <class T>
__global__ void scale_kernel(T* x, long n, T beta) {
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x)
    x[i] = beta == T(0) ? T(0) : beta * x[i];
}

template <class T>
__global__ void gather_cols_kernel(const T* x, const std::int32_t* idx, T* y, long R, long Cin, long Cout) {
  const long n = R * Cout;
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x) {
    const long r = i / Cout, j = i - r * Cout;
    y[i] = x[r * Cin + idx[j]];
  }
}

template <class T>
__device__ T warp_sum(T v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// One warp per row; causal rows see columns <= r % C.
template <class T>
__global__ void softmax_kernel(T* s, long R, long C, bool causal) {
  const int lane = threadIdx.x % 32;
  for (long row = first_warp(); row < R; row += warp_stride()) {
    T* x = s + row * C;
    const long n = causal ? (row % C) + 1 : C;
    T mx = -INFINITY;
    for (long c = lane; c < n; c += 32) mx = fmax(mx, x[c]);
    for (int o = 16; o > 0; o /= 2) mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    T z = 0;
    for (long c = lane; c < n; c += 32) z += exp(x[c] - mx);
    z = warp_sum(z);
    for (long c = lane; c < C; c += 32) x[c] = c < n ? exp(x[c] - mx) / z : T(0);
  }
}
template <class T>
__global__ void softmax_bwd_kernel(const T* p, T* g, long R, long C) {
  const int lane = threadIdx.x % 32;
  for (long row = first_warp(); row < R; row += warp_stride()) {
    T dot = 0;
    for (long c = lane; c < C; c += 32) dot += p[row * C + c] * g[row * C + c];
    dot = warp_sum(dot);
    for (long c = lane; c < C; c += 32) g[row * C + c] = p[row * C + c] * (g[row * C + c] - dot);
  }
}
template <class T>
__global__ void add_repeat_rows_kernel(T* x, const T* v, long R, long C, long group) {
  const long n = R * C;
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x) {
    const long r = i / C, c = i - r * C;
    x[i] += v[(r / group) * C + c];
  }
}
template <class T>
__global__ void sum_row_groups_kernel(const T* x, T* out, long G, long C, long group) {
  const long n = G * C;
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x) {
    const long g = i / C, c = i - g * C;
    T s = 0;
    for (long r = 0; r < group; ++r) s += x[(g * group + r) * C + c];
    out[i] = s;
  }
}

template <class T>
__global__ void layernorm_fwd_kernel(const T* x, const T* g, const T* b, T eps, T* y, T* mean, T* rstd, long R, long C) {
  const int lane = threadIdx.x % 32;
  for (long row = first_warp(); row < R; row += warp_stride()) {
    const T* xr = x + row * C;
    T s = 0;
    for (long c = lane; c < C; c += 32) s += xr[c];
    const T mu = warp_sum(s) / T(C);
    T v = 0;
    for (long c = lane; c < C; c += 32) v += (xr[c] - mu) * (xr[c] - mu);
    const T rs = rsqrt(warp_sum(v) / T(C) + eps);
    for (long c = lane; c < C; c += 32) y[row * C + c] = (xr[c] - mu) * rs * g[c] + b[c];
    if (lane == 0) mean[row] = mu, rstd[row] = rs;
  }
}

/// dx only; dγ and dβ are column reductions done by the two kernels below.
template <class T>
__global__ void layernorm_bwd_kernel(const T* x, const T* g, const T* mean, const T* rstd, const T* dy, T* dx, long R,
                                     long C) {
  const int lane = threadIdx.x % 32;
  for (long row = first_warp(); row < R; row += warp_stride()) {
    const T mu = mean[row], rs = rstd[row];
    T s1 = 0, s2 = 0;
    for (long c = lane; c < C; c += 32) {
      const T xh = (x[row * C + c] - mu) * rs, gg = dy[row * C + c] * g[c];
      s1 += gg;
      s2 += gg * xh;
    }
    s1 = warp_sum(s1) / T(C);
    s2 = warp_sum(s2) / T(C);
    for (long c = lane; c < C; c += 32) {
      const T xh = (x[row * C + c] - mu) * rs;
      dx[row * C + c] = rs * (dy[row * C + c] * g[c] - s1 - xh * s2);
    }
  }
}
/// dγ, dβ in two fixed-order stages (deterministic, no atomics): block (x, y) sums rows of chunk y for 32 columns
/// into part[y] (dγ) and part[P + y] (dβ); the second kernel adds the P chunk sums in order into the gradients.
constexpr int kLnChunks = 32;
template <class T>
__global__ void layernorm_param_partial_kernel(const T* x, const T* mean, const T* rstd, const T* dy, T* part, long R,
                                               long C) {
  __shared__ T sg[8][33], sb[8][33];
  const long c = blockIdx.x * 32L + threadIdx.x;
  const long r0 = R * blockIdx.y / kLnChunks, r1 = R * (blockIdx.y + 1) / kLnChunks;
  T gs = 0, bs = 0;
  if (c < C)
    for (long r = r0 + threadIdx.y; r < r1; r += 8) {
      const T d = dy[r * C + c];
      gs += d * (x[r * C + c] - mean[r]) * rstd[r];
      bs += d;
    }
  sg[threadIdx.y][threadIdx.x] = gs;
  sb[threadIdx.y][threadIdx.x] = bs;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    T g2 = 0, b2 = 0;
    for (int k = 0; k < 8; ++k) g2 += sg[k][threadIdx.x], b2 += sb[k][threadIdx.x];
    part[long(blockIdx.y) * C + c] = g2;
    part[long(kLnChunks + blockIdx.y) * C + c] = b2;
  }
}
template <class T>
__global__ void layernorm_param_finish_kernel(const T* part, T* dg, T* db, long C) {
  for (long c = blockIdx.x * long(blockDim.x) + threadIdx.x; c < C; c += long(gridDim.x) * blockDim.x) {
    T g2 = 0, b2 = 0;
    for (int k = 0; k < kLnChunks; ++k) g2 += part[k * C + c], b2 += part[(kLnChunks + k) * C + c];
    dg[c] += g2;
    db[c] += b2;
  }
}

template <class T>
__global__ void normal_kernel(T* x, long n, std::uint64_t seed, std::uint64_t base, T mean, T sd) {
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x)
    x[i] = mean + sd * T(rng_detail::normal(seed, base + std::uint64_t(i)));
}
template <class T>
__global__ void uniform_kernel(T* x, long n, std::uint64_t seed, std::uint64_t base, T lo, T hi) {
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x)
    x[i] = rng_detail::uniform_in<T>(lo, hi, rng_detail::uniform01(rng_detail::hash2(seed, base + std::uint64_t(i))));
}

/// Deterministic two-stage reductions in double: kRedBlocks blocks (a fixed number, not one chosen from the device)
/// each reduce a grid-strided share into a partial with a fixed tree, then one block sums the partials the same
/// way. Op maps an element to the double that is summed.
constexpr int kRedBlocks = 512;
__device__ inline double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o /= 2) {
    if (int(threadIdx.x) < o) sh[threadIdx.x] += sh[threadIdx.x + o];
    __syncthreads();
  }
  return sh[0];
}
template <class T, class Op>
__global__ void reduce_partial_kernel(const T* x, long n, Op op, double* part) {
  __shared__ double sh[kThreads];
  double s = 0;
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x) s += op(x[i]);
  const double b = block_sum(s, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = b;
}
template <class Out>
__global__ void reduce_finish_kernel(const double* part, Out* out) {
  __shared__ double sh[kThreads];
  double s = 0;
  for (int b = threadIdx.x; b < kRedBlocks; b += kThreads) s += part[b];
  const double t = block_sum(s, sh);
  if (threadIdx.x == 0) *out = Out(t);
}
struct Identity {
  __device__ double operator()(float v) const { return double(v); }
};
struct Sq {
  __device__ double operator()(float v) const { return double(v) * double(v); }
};
struct NonFinite {
  __device__ double operator()(float v) const { return isfinite(v) ? 0.0 : 1.0; }
};
/// Σ op(x) into *out (device memory), stream-ordered; a pool temporary holds the partials.
template <class T, class Op, class Out>
void reduce_into(const T* x, long n, Op op, Out* out) {
  double* part = nullptr;
  gpu::check(cudaMallocAsync(reinterpret_cast<void**>(&part), kRedBlocks * sizeof(double), stream()), "reduce");
  reduce_partial_kernel<<<kRedBlocks, kThreads, 0, stream()>>>(x, n, op, part);
  reduce_finish_kernel<<<1, kThreads, 0, stream()>>>(part, out);
  launched("reduce");
  gpu::check(cudaFreeAsync(part, stream()), "reduce");
}
/// Σ op(x) read back to the host (one scalar read; synchronises the stream).
template <class T, class Op>
double reduce_to_host(const T* x, long n, Op op) {
  ++gpu::context().transfers().scalar_reads;
  if (n == 0) return 0.0;
  double* d = nullptr;
  gpu::check(cudaMallocAsync(reinterpret_cast<void**>(&d), sizeof(double), stream()), "reduce");
  reduce_into(x, n, op, d);
  double h = 0;
  gpu::check(cudaMemcpyAsync(&h, d, sizeof(double), cudaMemcpyDeviceToHost, stream()), "reduce");
  gpu::check(cudaFreeAsync(d, stream()), "reduce");
  gpu::context().synchronize();
  return h;
}

/// The context's vector of at least n ones (grown by doubling; refilled on the context's stream).
inline const float* ones(long n) {
  gpu::Context::Ones& o = gpu::context().ones_cache();
  if (o.size < n) {
    const long m = std::max(n, 2 * o.size);
    if (o.data) gpu::check(cudaFreeAsync(o.data, stream()), "ones");
    o.data = nullptr;
    o.size = 0;
    gpu::check(cudaMallocAsync(reinterpret_cast<void**>(&o.data), std::size_t(m) * sizeof(float), stream()), "ones");
    fill_kernel<<<blocks_for(m), kThreads, 0, stream()>>>(o.data, m, 1.0f);
    launched("ones");
    o.size = m;
  }
  return o.data;
}

/// The device pointers of a batched GEMM's n_outer × n_inner matrices (one per (i, j), i outer): built on the
/// device so that one cublasSgemmBatched call replaces a loop of strided calls.
template <class T>
__global__ void batch_pointers_kernel(const T* a, MatView va, const T* b, MatView vb, T* c, MatView vc, long n_outer,
                                      long n_inner, const T** pa, const T** pb, T** pc) {
  const long n = n_outer * n_inner;
  for (long k = blockIdx.x * long(blockDim.x) + threadIdx.x; k < n; k += long(gridDim.x) * blockDim.x) {
    const long i = k / n_inner, j = k - i * n_inner;
    pa[k] = a + va.offset + i * va.outer + j * va.inner;
    pb[k] = b + vb.offset + i * vb.outer + j * vb.inner;
    pc[k] = c + vc.offset + i * vc.outer + j * vc.inner;
  }
}
}  // namespace cuda_detail

namespace cuda_detail {
/// C = beta C for a product with nothing to add (k = 0): cuBLAS returns without touching C, the Cpu path scales it.
template <class T>
void scale_only(T* c, long n, T beta) {
  if (beta == T(1) || n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(c, n, beta);
  launched("gemm (k = 0)");
}
inline cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }
inline bool bf16() { return gpu::context().math() == gpu::MathMode::bf16; }
}  // namespace cuda_detail

/// Row-major C = alpha op(A) op(B) + beta C via cuBLAS (column-major): computes Cᵀ = op(B)ᵀ op(A)ᵀ. In the bf16
/// math mode cuBLAS rounds the operands to bfloat16 and accumulates in fp32 (cublasGemmEx).
template <class T>
void gemm(const Tensor<Cuda<T>>& a, bool trans_a, const Tensor<Cuda<T>>& b, bool trans_b, Tensor<Cuda<T>>& c,
          T alpha = T(1), T beta = T(0)) {
  const detail::GemmShape sh = detail::gemm_shape(a, trans_a, b, trans_b, c, beta);
  const long m = sh.m, n = sh.n, k = sh.k;
  if (sh.resize_c) c = Tensor<Cuda<T>>(m, n, uninit);
  if (m == 0 || n == 0) return;
  if (k == 0) return cuda_detail::scale_only(c.data(), c.size(), beta);
  using cuda_detail::op;
  if (cuda_detail::bf16())
    gpu::check(cublasGemmEx(gpu::context().blas(), op(trans_b), op(trans_a), int(n), int(m), int(k), &alpha, b.data(),
                            CUDA_R_32F, int(b.cols()), a.data(), CUDA_R_32F, int(a.cols()), &beta, c.data(), CUDA_R_32F,
                            int(n), CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx (bf16)");
  else
    gpu::check(cublasSgemm(gpu::context().blas(), op(trans_b), op(trans_a), int(n), int(m), int(k), &alpha, b.data(),
                           int(b.cols()), a.data(), int(a.cols()), &beta, c.data(), int(n)),
               "cublasSgemm");
}

template <class T, class F, class... In>
void map(Tensor<Cuda<T>>& out, F f, const In&... in) {
  const long R = out.rows(), C = out.cols();
  cuda_detail::Args<T, sizeof...(In)> args{};
  std::size_t i = 0;
  (([&] {
     const detail::Strides st = detail::broadcast_strides("map", in.rows(), in.cols(), R, C);
     args.a[i++] = {in.data(), st.rs, st.cs};
   }()),
   ...);
  if (R * C == 0) return;
  cuda_detail::map_kernel<<<cuda_detail::blocks_for(R * C), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      out.data(), R, C, f, args, std::index_sequence_for<In...>{});
  cuda_detail::launched("map");
}

template <class F, class T, class... Ts>
void for_each(F f, Tensor<Cuda<T>>& first, Ts&... rest) {
  ((require_shape("for_each", rest, first.rows(), first.cols())), ...);
  if (first.size() == 0) return;
  cuda_detail::for_each_kernel<<<cuda_detail::blocks_for(first.size()), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      first.size(), f, first.data(), rest.data()...);
  cuda_detail::launched("for_each");
}

template <class T>
Tensor<Cuda<T>> row_sum(const Tensor<Cuda<T>>& x) {
  Tensor<Cuda<T>> out(x.rows(), 1, uninit);
  if (x.rows() == 0) return out;
  if (x.cols() == 0) return Tensor<Cuda<T>>(x.rows(), 1);
  cuda_detail::row_sum_kernel<<<cuda_detail::blocks_for(x.rows() * 32), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      x.data(), out.data(), x.rows(), x.cols());
  cuda_detail::launched("row_sum");
  return out;
}
/// out = beta out + Σ_rows x: a GEMV of xᵀ against the context's ones vector (one cuBLAS call, deterministic;
/// the bias gradient of every Linear goes through here).
template <class T>
void col_sum(const Tensor<Cuda<T>>& x, Tensor<Cuda<T>>& out, T beta = T(0)) {
  if (detail::col_sum_needs_output(out, x.cols(), beta)) out = Tensor<Cuda<T>>(1, x.cols());
  if (x.cols() == 0) return;
  if (x.rows() == 0) return cuda_detail::scale_only(out.data(), out.size(), beta);
  const T one = T(1);
  // Row-major R x C is column-major C x R with leading dimension C: out = X_cm · ones.
  gpu::check(cublasSgemv(gpu::context().blas(), CUBLAS_OP_N, int(x.cols()), int(x.rows()), &one, x.data(),
                         int(x.cols()), cuda_detail::ones(x.rows()), 1, &beta, out.data(), 1),
             "cublasSgemv (col_sum)");
}
template <class T>
T sum(const Tensor<Cuda<T>>& x) {
  return T(cuda_detail::reduce_to_host(x.data(), x.size(), cuda_detail::Identity{}));
}
template <class T>
T sum_sq(const Tensor<Cuda<T>>& x) {
  return T(cuda_detail::reduce_to_host(x.data(), x.size(), cuda_detail::Sq{}));
}
/// out(0, i) = Σ x², computed and stored on the device (no host read; see the Cpu twin).
template <class T>
void sum_sq_into(const Tensor<Cuda<T>>& x, Tensor<Cuda<T>>& out, long i) {
  detail::check_slot("sum_sq_into", out, i);
  if (x.size() == 0) {
    gpu::check(cudaMemsetAsync(out.data() + i, 0, sizeof(T), cuda_detail::stream()), "sum_sq_into");
    return;
  }
  cuda_detail::reduce_into(x.data(), x.size(), cuda_detail::Sq{}, out.data() + i);
}
template <class T>
bool all_finite(const Tensor<Cuda<T>>& x) {
  return cuda_detail::reduce_to_host(x.data(), x.size(), cuda_detail::NonFinite{}) == 0.0;
}
template <class T>
void set_zero(Tensor<Cuda<T>>& x) {
  if (x.size()) gpu::check(cudaMemsetAsync(x.data(), 0, x.bytes(), cuda_detail::stream()), "set_zero");
}
namespace fn {
struct Constant {
  float v;
  BIFLOW_HOST_DEVICE float operator()() const { return v; }
};
}  // namespace fn
template <class T>
void fill(Tensor<Cuda<T>>& x, T v) {
  map(x, fn::Constant{float(v)});
}

template <class T>
Tensor<Cuda<T>> slice_cols(const Tensor<Cuda<T>>& x, long c0, long n) {
  detail::check_col_range(c0, n, x.cols());
  Tensor<Cuda<T>> y(x.rows(), n, uninit);
  if (y.size())
    gpu::check(cudaMemcpy2DAsync(y.data(), n * sizeof(T), x.data() + c0, x.cols() * sizeof(T), n * sizeof(T), x.rows(),
                                  cudaMemcpyDeviceToDevice, cuda_detail::stream()),
                "slice_cols");
  return y;
}
template <class T>
Tensor<Cuda<T>> concat_cols(const Tensor<Cuda<T>>& a, const Tensor<Cuda<T>>& b) {
  require_dim("concat_cols", "rows of the second tensor", a.rows(), b.rows());
  const long C = a.cols() + b.cols();
  Tensor<Cuda<T>> y(a.rows(), C, uninit);
  if (a.size())
    gpu::check(cudaMemcpy2DAsync(y.data(), C * sizeof(T), a.data(), a.cols() * sizeof(T), a.cols() * sizeof(T),
                                  a.rows(), cudaMemcpyDeviceToDevice, cuda_detail::stream()),
                "concat_cols");
  if (b.size())
    gpu::check(cudaMemcpy2DAsync(y.data() + a.cols(), C * sizeof(T), b.data(), b.cols() * sizeof(T),
                                  b.cols() * sizeof(T), b.rows(), cudaMemcpyDeviceToDevice, cuda_detail::stream()),
                "concat_cols");
  return y;
}
template <class T>
Tensor<Cuda<T>> gather_cols(const Tensor<Cuda<T>>& x, const Indices<Cuda<T>>& idx) {
  Tensor<Cuda<T>> y(x.rows(), idx.size(), uninit);
  if (y.size() == 0) return y;
  cuda_detail::gather_cols_kernel<<<cuda_detail::blocks_for(y.size()), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      x.data(), idx.data(), y.data(), x.rows(), x.cols(), idx.size());
  cuda_detail::launched("gather_cols");
  return y;
}

/// Batched strided GEMM (see the Cpu twin). When the n_outer × n_inner matrices lie at one uniform stride (or one
/// batch dimension is 1) it is one cublasSgemmStridedBatched; otherwise (attention: batch × heads) the matrices'
/// pointers are built on the device and one cublasSgemmBatched call does every head of every sequence.
template <class T>
void gemm_batched(const Tensor<Cuda<T>>& a, const MatView& va, bool trans_a, const Tensor<Cuda<T>>& b, const MatView& vb,
                  bool trans_b, Tensor<Cuda<T>>& c, const MatView& vc, long n_outer, long n_inner, T alpha = T(1),
                  T beta = T(0)) {
  detail::check_batched_gemm(va, trans_a, vb, trans_b, vc);
  detail::check_view("gemm_batched", "A", va, n_outer, n_inner, a.size());
  detail::check_view("gemm_batched", "B", vb, n_outer, n_inner, b.size());
  detail::check_view("gemm_batched", "C", vc, n_outer, n_inner, c.size());
  const long m = vc.rows, n = vc.cols, k = trans_a ? va.rows : va.cols;
  if (m == 0 || n == 0 || n_outer <= 0 || n_inner <= 0) return;
  const long count = n_outer * n_inner;
  if (k == 0) {
    for (long i = 0; i < n_outer; ++i)
      for (long j = 0; j < n_inner; ++j)
        for (long r = 0; r < m; ++r)
          cuda_detail::scale_only(c.data() + vc.offset + i * vc.outer + j * vc.inner + r * vc.ld, n, beta);
    return;
  }
  using cuda_detail::op;
  const bool bf = cuda_detail::bf16();
  // One stride for the flattened batch index i * n_inner + j?
  auto flat = [&](const MatView& v) { return n_outer == 1 || n_inner == 1 || v.outer == n_inner * v.inner; };
  if (flat(va) && flat(vb) && flat(vc)) {
    auto stride = [&](const MatView& v) { return n_inner == 1 ? v.outer : v.inner; };
    if (bf)
      gpu::check(cublasGemmStridedBatchedEx(gpu::context().blas(), op(trans_b), op(trans_a), int(n), int(m), int(k),
                                            &alpha, b.data() + vb.offset, CUDA_R_32F, int(vb.ld), stride(vb),
                                            a.data() + va.offset, CUDA_R_32F, int(va.ld), stride(va), &beta,
                                            c.data() + vc.offset, CUDA_R_32F, int(vc.ld), stride(vc), int(count),
                                            CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmStridedBatchedEx (bf16)");
    else
      gpu::check(cublasSgemmStridedBatched(gpu::context().blas(), op(trans_b), op(trans_a), int(n), int(m), int(k),
                                           &alpha, b.data() + vb.offset, int(vb.ld), stride(vb), a.data() + va.offset,
                                           int(va.ld), stride(va), &beta, c.data() + vc.offset, int(vc.ld), stride(vc),
                                           int(count)),
                 "cublasSgemmStridedBatched");
    return;
  }
  void* ptrs = nullptr;
  gpu::check(cudaMallocAsync(&ptrs, 3 * std::size_t(count) * sizeof(T*), cuda_detail::stream()), "gemm_batched");
  const T** pa = static_cast<const T**>(ptrs);
  const T** pb = pa + count;
  T** pc = const_cast<T**>(pb + count);
  cuda_detail::batch_pointers_kernel<<<cuda_detail::blocks_for(count), cuda_detail::kThreads, 0,
                                       cuda_detail::stream()>>>(a.data(), va, b.data(), vb, c.data(), vc, n_outer,
                                                                n_inner, pa, pb, pc);
  cuda_detail::launched("gemm_batched pointers");
  if (bf)
    gpu::check(cublasGemmBatchedEx(gpu::context().blas(), op(trans_b), op(trans_a), int(n), int(m), int(k), &alpha,
                                   reinterpret_cast<const void* const*>(pb), CUDA_R_32F, int(vb.ld),
                                   reinterpret_cast<const void* const*>(pa), CUDA_R_32F, int(va.ld), &beta,
                                   reinterpret_cast<void* const*>(pc), CUDA_R_32F, int(vc.ld), int(count),
                                   CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT),
               "cublasGemmBatchedEx (bf16)");
  else
    gpu::check(cublasSgemmBatched(gpu::context().blas(), op(trans_b), op(trans_a), int(n), int(m), int(k), &alpha, pb,
                                  int(vb.ld), pa, int(va.ld), &beta, pc, int(vc.ld), int(count)),
               "cublasSgemmBatched");
  gpu::check(cudaFreeAsync(ptrs, cuda_detail::stream()), "gemm_batched");
}

namespace cuda_detail {
template <class T, class F>
__global__ void packed_map_kernel(F f, long n, long P, const T* x, const T* p, T* y, T* l) {
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x)
    f(x[i], p + i * P, y[i], l[i]);
}
template <class T, class F>
__global__ void packed_map_grad_kernel(F f, long n, long C, long P, const T* x, const T* p, const T* gy, const T* gl,
                                       T* dx, T* dp) {
  for (long i = blockIdx.x * long(blockDim.x) + threadIdx.x; i < n; i += long(gridDim.x) * blockDim.x)
    f(x[i], p + i * P, gy[i], gl[i / C], dx[i], dp + i * P);
}
}  // namespace cuda_detail
/// Packed-parameter elementwise map (see the Cpu twin): one thread per element.
template <class T, class F>
void packed_map(F f, long P, const Tensor<Cuda<T>>& x, const Tensor<Cuda<T>>& p, Tensor<Cuda<T>>& y,
                Tensor<Cuda<T>>& l) {
  const long R = x.rows(), C = x.cols();
  require_shape("packed_map: parameters", p, R, C * P);
  require_shape("packed_map: y", y, R, C);
  require_shape("packed_map: l", l, R, C);
  if (x.size() == 0) return;
  cuda_detail::packed_map_kernel<<<cuda_detail::blocks_for(x.size()), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      f, x.size(), P, x.data(), p.data(), y.data(), l.data());
  cuda_detail::launched("packed_map");
}
template <class T, class F>
void packed_map_grad(F f, long P, const Tensor<Cuda<T>>& x, const Tensor<Cuda<T>>& p, const Tensor<Cuda<T>>& gy,
                     const Tensor<Cuda<T>>& gl, Tensor<Cuda<T>>& dx, Tensor<Cuda<T>>& dp) {
  const long R = x.rows(), C = x.cols();
  require_shape("packed_map_grad: parameters", p, R, C * P);
  require_shape("packed_map_grad: gy", gy, R, C);
  require_shape("packed_map_grad: gl", gl, R, 1);
  require_shape("packed_map_grad: dx", dx, R, C);
  require_shape("packed_map_grad: dp", dp, R, C * P);
  if (x.size() == 0) return;
  cuda_detail::packed_map_grad_kernel<<<cuda_detail::blocks_for(x.size()), cuda_detail::kThreads, 0,
                                        cuda_detail::stream()>>>(f, x.size(), C, P, x.data(), p.data(), gy.data(),
                                                                 gl.data(), dx.data(), dp.data());
  cuda_detail::launched("packed_map_grad");
}

template <class T>
void softmax_rows(Tensor<Cuda<T>>& s, bool causal) {
  if (s.size() == 0) return;
  cuda_detail::softmax_kernel<<<cuda_detail::blocks_for(s.rows() * 32), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      s.data(), s.rows(), s.cols(), causal);
  cuda_detail::launched("softmax_rows");
}
template <class T>
void softmax_rows_backward(const Tensor<Cuda<T>>& p, Tensor<Cuda<T>>& dp) {
  require_shape("softmax_rows_backward: dp", dp, p.rows(), p.cols());
  if (p.size() == 0) return;
  cuda_detail::softmax_bwd_kernel<<<cuda_detail::blocks_for(p.rows() * 32), cuda_detail::kThreads, 0,
                                    cuda_detail::stream()>>>(p.data(), dp.data(), p.rows(), p.cols());
  cuda_detail::launched("softmax_rows_backward");
}
template <class T>
void add_repeat_rows(Tensor<Cuda<T>>& x, const Tensor<Cuda<T>>& v, long group) {
  detail::check_groups("add_repeat_rows", x.rows(), v.rows(), group);
  require_cols("add_repeat_rows", v, x.cols());
  if (x.size() == 0) return;
  cuda_detail::add_repeat_rows_kernel<<<cuda_detail::blocks_for(x.size()), cuda_detail::kThreads, 0,
                                        cuda_detail::stream()>>>(x.data(), v.data(), x.rows(), x.cols(), group);
  cuda_detail::launched("add_repeat_rows");
}
template <class T>
Tensor<Cuda<T>> sum_row_groups(const Tensor<Cuda<T>>& x, long group) {
  if (group <= 0 || x.rows() % group != 0)
    throw shape_error(detail::cat("sum_row_groups: ", x.rows(), " rows do not split into groups of ", group));
  Tensor<Cuda<T>> out(x.rows() / group, x.cols(), uninit);
  if (out.size() == 0) return out;
  cuda_detail::sum_row_groups_kernel<<<cuda_detail::blocks_for(out.size()), cuda_detail::kThreads, 0,
                                       cuda_detail::stream()>>>(x.data(), out.data(), out.rows(), x.cols(), group);
  cuda_detail::launched("sum_row_groups");
  return out;
}
template <class T>
void copy_block(const Tensor<Cuda<T>>& src, long src_off, long src_ld, Tensor<Cuda<T>>& dst, long dst_off, long dst_ld,
                long rows, long cols) {
  detail::check_view("copy_block", "source", {src_off, rows, cols, src_ld, 0, 0}, 1, 1, src.size());
  detail::check_view("copy_block", "destination", {dst_off, rows, cols, dst_ld, 0, 0}, 1, 1, dst.size());
  if (rows <= 0 || cols <= 0) return;
  gpu::check(cudaMemcpy2DAsync(dst.data() + dst_off, dst_ld * sizeof(T), src.data() + src_off, src_ld * sizeof(T),
                               cols * sizeof(T), rows, cudaMemcpyDeviceToDevice, cuda_detail::stream()),
             "copy_block");
}

template <class T>
void layernorm_forward(const Tensor<Cuda<T>>& x, const Tensor<Cuda<T>>& gamma, const Tensor<Cuda<T>>& beta, T eps,
                       Tensor<Cuda<T>>& y, Tensor<Cuda<T>>& mean, Tensor<Cuda<T>>& rstd) {
  const long R = x.rows(), C = x.cols();
  y = Tensor<Cuda<T>>(R, C, uninit);
  mean = Tensor<Cuda<T>>(R, 1, uninit);
  rstd = Tensor<Cuda<T>>(R, 1, uninit);
  if (R == 0) return;
  cuda_detail::layernorm_fwd_kernel<<<cuda_detail::blocks_for(R * 32), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      x.data(), gamma.data(), beta.data(), eps, y.data(), mean.data(), rstd.data(), R, C);
  cuda_detail::launched("layernorm_forward");
}
template <class T>
Tensor<Cuda<T>> layernorm_backward(const Tensor<Cuda<T>>& x, const Tensor<Cuda<T>>& gamma, const Tensor<Cuda<T>>& mean,
                                   const Tensor<Cuda<T>>& rstd, const Tensor<Cuda<T>>& dy, Tensor<Cuda<T>>& dgamma,
                                   Tensor<Cuda<T>>& dbeta) {
  const long R = x.rows(), C = x.cols();
  Tensor<Cuda<T>> dx(R, C, uninit);
  if (R == 0) return dx;
  require_shape("layernorm_backward: dgamma", dgamma, gamma.rows(), gamma.cols());
  require_shape("layernorm_backward: dbeta", dbeta, gamma.rows(), gamma.cols());
  cuda_detail::layernorm_bwd_kernel<<<cuda_detail::blocks_for(R * 32), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(), dx.data(), R, C);
  if (C > 0) {
    T* part = nullptr;
    const std::size_t n = std::size_t(2 * cuda_detail::kLnChunks) * std::size_t(C);
    gpu::check(cudaMallocAsync(reinterpret_cast<void**>(&part), n * sizeof(T), cuda_detail::stream()),
               "layernorm_backward");
    const dim3 grid(unsigned((C + 31) / 32), unsigned(cuda_detail::kLnChunks)), block(32, 8);
    cuda_detail::layernorm_param_partial_kernel<<<grid, block, 0, cuda_detail::stream()>>>(
        x.data(), mean.data(), rstd.data(), dy.data(), part, R, C);
    cuda_detail::layernorm_param_finish_kernel<<<cuda_detail::blocks_for(C), cuda_detail::kThreads, 0,
                                                 cuda_detail::stream()>>>(part, dgamma.data(), dbeta.data(), C);
    gpu::check(cudaFreeAsync(part, cuda_detail::stream()), "layernorm_backward");
  }
  cuda_detail::launched("layernorm_backward");
  return dx;
}

template <class T>
void fill_normal(Tensor<Cuda<T>>& x, Rng& rng, T mean = T(0), T stddev = T(1)) {
  const std::uint64_t base = rng.take(std::uint64_t(x.size()));
  if (x.size() == 0) return;
  cuda_detail::normal_kernel<<<cuda_detail::blocks_for(x.size()), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      x.data(), x.size(), rng.seed(), base, mean, stddev);
  cuda_detail::launched("fill_normal");
}
template <class T>
void fill_uniform(Tensor<Cuda<T>>& x, Rng& rng, T lo = T(0), T hi = T(1)) {
  const std::uint64_t base = rng.take(std::uint64_t(x.size()));
  if (x.size() == 0) return;
  cuda_detail::uniform_kernel<<<cuda_detail::blocks_for(x.size()), cuda_detail::kThreads, 0, cuda_detail::stream()>>>(
      x.data(), x.size(), rng.seed(), base, lo, hi);
  cuda_detail::launched("fill_uniform");
}

/// Inverse of a small square matrix. Computed on the host in double (explicit download + upload): used
/// only by LULinear's inverse, never in a training step.
template <class T>
Tensor<Cuda<T>> inverse(const Tensor<Cuda<T>>& a) {
  require_dim("inverse", "columns of a square matrix", a.rows(), a.cols());
  const Eigen::MatrixXd h = to_host(a).template cast<double>();
  return from_host<Cuda<T>>(HostMatrix<T>(h.partialPivLu().inverse().template cast<T>()));
}

template <class T>
Indices<Cuda<T>> backend_make_indices(backend_tag<Cuda<T>>, std::vector<std::int32_t> v) {
  return Indices<Cuda<T>>(v);
}

/// Waits for the work queued on the calling thread's context (stream).
template <class T>
void backend_synchronize(backend_tag<Cuda<T>>) {
  gpu::context().synchronize();
}
/// Bytes held by biflow tensors in the device's stream-ordered pool and the pool's high-water mark.
template <class T>
MemoryUsage backend_memory_usage(backend_tag<Cuda<T>>) {
  const gpu::PoolUsage u = gpu::pool_usage();
  return {static_cast<long long>(u.used), static_cast<long long>(u.peak)};
}
/// Synchronises first, so frees still queued on the stream count before the mark is reset.
template <class T>
bool backend_reset_peak_memory(backend_tag<Cuda<T>>) {
  gpu::context().synchronize();
  gpu::reset_pool_peak();
  return true;
}

}  // namespace biflow
