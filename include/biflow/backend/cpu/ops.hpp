#pragma once
// Cpu backend primitives on Eigen. Every function here has a Cuda twin in backend/cuda/ops.cuh with the
// same signature; layers call them unqualified and overload resolution picks the backend.
#include "../../core/config.hpp"  // before Eigen
#include <Eigen/Dense>
#if defined(BIFLOW_CPU_CBLAS)
#include <cblas.h>  // a serial OpenBLAS or BLIS (cmake/biflowCpuBlas.cmake)
#endif
#include <algorithm>
#include <cmath>
#include <tuple>

#include "../../core/fast_math.hpp"
#include "memory.hpp"
#include "parallel.hpp"
#include "reduce.hpp"
#include "../../core/rng.hpp"
#include "../tensor.hpp"

namespace biflow {

namespace cpu {
/// The engine of the Cpu backend's GEMMs, fixed when the program is compiled: "eigen", or a serial CBLAS for the
/// products at or above min_blas_mnk() (biflow's CMake sets it: BIFLOW_CPU_BLAS=auto|eigen|openblas|blis).
constexpr const char* gemm_engine() {
#if defined(BIFLOW_CPU_CBLAS)
  return BIFLOW_CPU_BLAS_NAME;
#else
  return "eigen";
#endif
}
/// The smallest m·n·k sent to the BLAS (the probe's crossover); 0 without one.
constexpr double min_blas_mnk() {
#if defined(BIFLOW_CPU_CBLAS)
  return double(BIFLOW_CPU_BLAS_MIN_MNK);
#else
  return 0;
#endif
}
}  // namespace cpu

#if defined(BIFLOW_CPU_CBLAS)
namespace detail {
inline void cblas_gemm(bool ta, bool tb, long m, long n, long k, float alpha, const float* a, long lda, const float* b,
                       long ldb, float beta, float* c, long ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
inline void cblas_gemm(bool ta, bool tb, long m, long n, long k, double alpha, const double* a, long lda,
                       const double* b, long ldb, double beta, double* c, long ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
}  // namespace detail
#endif

/// C = alpha * op(A) op(B) + beta * C. C is resized (and beta must be 0) when its shape does not match.
template <class T>
void gemm(const Tensor<Cpu<T>>& a, bool trans_a, const Tensor<Cpu<T>>& b, bool trans_b, Tensor<Cpu<T>>& c,
          T alpha = T(1), T beta = T(0)) {
  const detail::GemmShape sh = detail::gemm_shape(a, trans_a, b, trans_b, c, beta);
  if (sh.resize_c) c = Tensor<Cpu<T>>(sh.m, sh.n, uninit);
#if defined(BIFLOW_CPU_CBLAS)
  // The BLAS from its measured crossover up; tensors are dense row-major (views too), as CBLAS wants them. Each
  // thread's block of rows is one serial BLAS call, so the row split below stays the only source of threads.
  if (sh.m > 0 && sh.n > 0 && sh.k > 0 && double(sh.m) * double(sh.n) * double(sh.k) >= cpu::min_blas_mnk()) {
    // OpenBLAS 0.3.21's small-matrix path mallocs a packed copy of B in every A·B (no transposes) with few columns
    // (n ≤ 24 measured: a Linear's input gradient into 1–16 features); it does not for A·Bᵀ. So such a B goes in
    // transposed (k·n elements, a step arena's buffer in training) and the step allocates nothing.
    Tensor<Cpu<T>> bt;
    bool tb = trans_b;
    const Tensor<Cpu<T>>* bp = &b;
    if (!trans_a && !trans_b && sh.n <= 32) {
      bt = Tensor<Cpu<T>>(sh.n, sh.k, uninit);
      bt.eigen() = b.eigen().transpose();
      bp = &bt;
      tb = true;
    }
    auto blas_rows = [&](long r0, long r1) {
      const T* ap = trans_a ? a.data() + r0 : a.data() + r0 * a.cols();
      detail::cblas_gemm(trans_a, tb, r1 - r0, sh.n, sh.k, alpha, ap, a.cols(), bp->data(), bp->cols(), beta,
                         c.data() + r0 * sh.n, sh.n);
    };
    const int nt = cpu::threads();
    if (nt > 1 && sh.m >= 2 * nt && double(sh.m) * double(sh.n) * double(sh.k) >= double(1L << 22))
      cpu::parallel_range(sh.m, (sh.m + nt - 1) / nt, blas_rows);
    else
      blas_rows(0, sh.m);
    return;
  }
#endif
  auto C = c.eigen();
  const auto A = a.eigen();
  const auto Bm = b.eigen();
  // Rows [r0, r1) of C; noalias: C never aliases A or B in biflow's layers, and skipping the temporary matters.
  auto rows = [&](long r0, long r1) {
    auto Cr = C.middleRows(r0, r1 - r0);
    if (beta == T(0)) Cr.setZero();
    else if (beta != T(1)) Cr *= beta;
    if (!trans_a) {
      const auto Ar = A.middleRows(r0, r1 - r0);
      if (!trans_b) Cr.noalias() += alpha * Ar * Bm;
      else Cr.noalias() += alpha * Ar * Bm.transpose();
    } else {
      const auto Ar = A.middleCols(r0, r1 - r0).transpose();
      if (!trans_b) Cr.noalias() += alpha * Ar * Bm;
      else Cr.noalias() += alpha * Ar * Bm.transpose();
    }
  };
  // Large products: one block of rows per thread (each an ordinary single-threaded Eigen GEMM).
  const int nt = cpu::threads();
  if (nt > 1 && sh.m >= 2 * nt && double(sh.m) * double(sh.n) * double(sh.k) >= double(1L << 22)) {
    cpu::parallel_range(sh.m, (sh.m + nt - 1) / nt, rows);
    return;
  }
  if (beta == T(0)) {
    if (!trans_a && !trans_b) C.noalias() = alpha * A * Bm;
    else if (!trans_a && trans_b) C.noalias() = alpha * A * Bm.transpose();
    else if (trans_a && !trans_b) C.noalias() = alpha * A.transpose() * Bm;
    else C.noalias() = alpha * A.transpose() * Bm.transpose();
    return;
  }
  rows(0, sh.m);
}

/// out[r, c] = f(in0[r', c'], in1[...], ...) where each input is out-shaped or broadcasts along a
/// dimension of size 1. Loops are written so the common cases (same shape; row-vector broadcast)
/// vectorise.
template <class T, class F, class... In>
void map(Tensor<Cpu<T>>& out, F f, const In&... in) {
  const long R = out.rows(), C = out.cols();
  const detail::Strides bc[] = {detail::broadcast_strides("map", in.rows(), in.cols(), R, C)...};
  const T* ptr[] = {in.data()...};
  T* o = out.data();
  bool same = true, contiguous_cols = true;
  for (const auto& b : bc) {
    same = same && b.rs == C && b.cs == 1;
    contiguous_cols = contiguous_cols && b.cs == 1;
  }
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    if (same) {
      cpu::parallel_range(R * C, cpu::kParallelGrain, [&](long lo, long hi) BIFLOW_FLATTEN {
        BIFLOW_IVDEP for (long i = lo; i < hi; ++i) o[i] = f(ptr[I][i]...);
      });
      return;
    }
    if (contiguous_cols) {
      cpu::parallel_range(R, cpu::grain_for(C), [&](long r0, long r1) BIFLOW_FLATTEN {
        for (long r = r0; r < r1; ++r) {
          const T* rowp[] = {ptr[I] + r * bc[I].rs...};
          T* orow = o + r * C;
          BIFLOW_IVDEP for (long c = 0; c < C; ++c) orow[c] = f(rowp[I][c]...);
        }
      });
      return;
    }
    for (long r = 0; r < R; ++r)
      for (long c = 0; c < C; ++c) o[r * C + c] = f(ptr[I][r * bc[I].rs + c * bc[I].cs]...);
  }(std::index_sequence_for<In...>{});
}

/// Applies f(a_i, b_i, ...) with every argument a mutable reference to element i (all same shape):
/// lets optimizers update several state tensors in one pass.
template <class F, class T, class... Ts>
void for_each(F f, Tensor<Cpu<T>>& first, Ts&... rest) {
  ((require_shape("for_each", rest, first.rows(), first.cols())), ...);
  const long n = first.size();
  [&](T* p0, auto*... p) {
    cpu::parallel_range(n, cpu::kParallelGrain, [&](long lo, long hi) BIFLOW_FLATTEN {
      BIFLOW_IVDEP for (long i = lo; i < hi; ++i) f(p0[i], p[i]...);
    });
  }(first.data(), rest.data()...);
}

/// Packed-parameter elementwise map (element-wise transforms with P parameters per element, e.g. splines):
/// for every element (r, c) of x (R × C), f(x(r, c), p + (r·C + c)·P, y(r, c), l(r, c)) with p R × (C·P).
template <class T, class F>
void packed_map(F f, long P, const Tensor<Cpu<T>>& x, const Tensor<Cpu<T>>& p, Tensor<Cpu<T>>& y, Tensor<Cpu<T>>& l) {
  const long R = x.rows(), C = x.cols();
  require_shape("packed_map: parameters", p, R, C * P);
  require_shape("packed_map: y", y, R, C);
  require_shape("packed_map: l", l, R, C);
  cpu::parallel_range(R, cpu::grain_for(C * P * 8), [&](long r0, long r1) {
    for (long i = r0 * C; i < r1 * C; ++i) f(x.data()[i], p.data() + i * P, y.data()[i], l.data()[i]);
  });
}
/// Its backward: f(x(r, c), p + (r·C + c)·P, gy(r, c), gl(r), dx(r, c), dp + (r·C + c)·P); gl is R × 1 (a
/// per-row log-det gradient), dp R × (C·P) (written, not accumulated).
template <class T, class F>
void packed_map_grad(F f, long P, const Tensor<Cpu<T>>& x, const Tensor<Cpu<T>>& p, const Tensor<Cpu<T>>& gy,
                     const Tensor<Cpu<T>>& gl, Tensor<Cpu<T>>& dx, Tensor<Cpu<T>>& dp) {
  const long R = x.rows(), C = x.cols();
  require_shape("packed_map_grad: parameters", p, R, C * P);
  require_shape("packed_map_grad: gy", gy, R, C);
  require_shape("packed_map_grad: gl", gl, R, 1);
  require_shape("packed_map_grad: dx", dx, R, C);
  require_shape("packed_map_grad: dp", dp, R, C * P);
  cpu::parallel_range(R, cpu::grain_for(C * P * 16), [&](long r0, long r1) {
    for (long i = r0 * C; i < r1 * C; ++i)
      f(x.data()[i], p.data() + i * P, gy.data()[i], gl.data()[i / C], dx.data()[i], dp.data() + i * P);
  });
}

/// rows x 1: sum of each row.
template <class T>
Tensor<Cpu<T>> row_sum(const Tensor<Cpu<T>>& x) {
  Tensor<Cpu<T>> out(x.rows(), 1, uninit);  // from the step's arena when there is one (not an Eigen temporary)
  out.eigen().noalias() = x.eigen().rowwise().sum();
  return out;
}
/// out (1 x cols) = beta * out + sum of x over rows.
template <class T>
void col_sum(const Tensor<Cpu<T>>& x, Tensor<Cpu<T>>& out, T beta = T(0)) {
  if (detail::col_sum_needs_output(out, x.cols(), beta)) out = Tensor<Cpu<T>>(1, x.cols());
  const long R = x.rows(), C = x.cols();
  T* o = out.data();
  if (beta == T(0)) std::fill(o, o + C, T(0));
  else if (beta != T(1)) BIFLOW_IVDEP for (long c = 0; c < C; ++c) o[c] *= beta;
  // Row by row: contiguous, vectorised over columns (Eigen's colwise() on row-major data is not).
  for (long r = 0; r < R; ++r) {
    const T* xr = x.data() + r * C;
    BIFLOW_IVDEP for (long c = 0; c < C; ++c) o[c] += xr[c];
  }
}
template <class T>
T sum(const Tensor<Cpu<T>>& x) {
  return x.eigen().sum();
}
template <class T>
T sum_sq(const Tensor<Cpu<T>>& x) {
  return x.eigen().squaredNorm();
}
/// out(0, i) = Σ x² (out is 1 x n): per-tensor squared norms gathered without a host read per tensor.
template <class T>
void sum_sq_into(const Tensor<Cpu<T>>& x, Tensor<Cpu<T>>& out, long i) {
  detail::check_slot("sum_sq_into", out, i);
  out.data()[i] = x.eigen().squaredNorm();
}
template <class T>
bool all_finite(const Tensor<Cpu<T>>& x) {
  return x.eigen().allFinite();
}
template <class T>
void set_zero(Tensor<Cpu<T>>& x) {
  x.eigen().setZero();
}
template <class T>
void fill(Tensor<Cpu<T>>& x, T v) {
  x.eigen().setConstant(v);
}

/// Columns [c0, c0 + n) of x.
template <class T>
Tensor<Cpu<T>> slice_cols(const Tensor<Cpu<T>>& x, long c0, long n) {
  detail::check_col_range(c0, n, x.cols());
  Tensor<Cpu<T>> out(x.rows(), n, uninit);
  out.eigen() = x.eigen().middleCols(c0, n);
  return out;
}
/// [a | b] side by side (same rows).
template <class T>
Tensor<Cpu<T>> concat_cols(const Tensor<Cpu<T>>& a, const Tensor<Cpu<T>>& b) {
  require_dim("concat_cols", "rows of the second tensor", a.rows(), b.rows());
  Tensor<Cpu<T>> out(a.rows(), a.cols() + b.cols(), uninit);
  out.eigen() << a.eigen(), b.eigen();
  return out;
}
/// y[:, j] = x[:, idx[j]].
template <class T>
Tensor<Cpu<T>> gather_cols(const Tensor<Cpu<T>>& x, const Indices<Cpu<T>>& idx) {
  Tensor<Cpu<T>> y(x.rows(), idx.size(), uninit);
  const auto* id = idx.data();
  cpu::parallel_range(x.rows(), cpu::grain_for(idx.size()), [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r)
      for (long j = 0; j < idx.size(); ++j) y.data()[r * idx.size() + j] = x.data()[r * x.cols() + id[j]];
  });
  return y;
}

/// Batched strided GEMM: for every (i, j) < (n_outer, n_inner), C_ij = alpha op(A_ij) op(B_ij) + beta C_ij with
/// each matrix a MatView into its tensor (attention's per-sample, per-head products). Views are bounds-checked.
template <class T>
void gemm_batched(const Tensor<Cpu<T>>& a, const MatView& va, bool trans_a, const Tensor<Cpu<T>>& b, const MatView& vb,
                  bool trans_b, Tensor<Cpu<T>>& c, const MatView& vc, long n_outer, long n_inner, T alpha = T(1),
                  T beta = T(0)) {
  detail::check_batched_gemm(va, trans_a, vb, trans_b, vc);
  detail::check_view("gemm_batched", "A", va, n_outer, n_inner, a.size());
  detail::check_view("gemm_batched", "B", vb, n_outer, n_inner, b.size());
  detail::check_view("gemm_batched", "C", vc, n_outer, n_inner, c.size());
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  using MMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  const long work = (trans_a ? va.cols : va.rows) * vc.cols * (trans_a ? va.rows : va.cols);
  cpu::parallel_range(n_outer * n_inner, cpu::grain_for(work), [&](long k0, long k1) {
    for (long k = k0; k < k1; ++k) {
      const long i = k / n_inner, j = k % n_inner;
      CMap A(a.data() + va.offset + i * va.outer + j * va.inner, va.rows, va.cols, Eigen::OuterStride<>(va.ld));
      CMap Bm(b.data() + vb.offset + i * vb.outer + j * vb.inner, vb.rows, vb.cols, Eigen::OuterStride<>(vb.ld));
      MMap C(c.data() + vc.offset + i * vc.outer + j * vc.inner, vc.rows, vc.cols, Eigen::OuterStride<>(vc.ld));
      if (beta == T(0)) C.setZero();
      else if (beta != T(1)) C *= beta;
      if (!trans_a && !trans_b) C.noalias() += alpha * A * Bm;
      else if (!trans_a && trans_b) C.noalias() += alpha * A * Bm.transpose();
      else if (trans_a && !trans_b) C.noalias() += alpha * A.transpose() * Bm;
      else C.noalias() += alpha * A.transpose() * Bm.transpose();
    }
  });
}

/// Row-wise softmax in place. causal: the tensor stacks square score matrices (cols x cols); row r is query
/// r % cols and may only attend to columns <= r % cols (the others get probability 0).
template <class T>
void softmax_rows(Tensor<Cpu<T>>& s, bool causal) {
  const long R = s.rows(), C = s.cols();
  cpu::parallel_range(R, cpu::grain_for(4 * C), [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      T* row = s.data() + r * C;
      const long n = causal ? (r % C) + 1 : C;
      T mx = row[0];
      for (long j = 1; j < n; ++j) mx = std::max(mx, row[j]);
      T z = 0;
      for (long j = 0; j < n; ++j) {
        if constexpr (std::is_same_v<T, float>) row[j] = fastmath::exp(row[j] - mx);  // vectorisable
        else row[j] = std::exp(row[j] - mx);
      }
      for (long j = 0; j < n; ++j) z += row[j];
      const T inv = T(1) / z;
      for (long j = 0; j < n; ++j) row[j] *= inv;
      for (long j = n; j < C; ++j) row[j] = T(0);
    }
  });
}
/// Softmax backward in place: dp <- p ∘ (dp − Σ_j p_j dp_j) per row (masked entries have p = 0, so stay 0).
template <class T>
void softmax_rows_backward(const Tensor<Cpu<T>>& p, Tensor<Cpu<T>>& dp) {
  require_shape("softmax_rows_backward: dp", dp, p.rows(), p.cols());
  const long R = p.rows(), C = p.cols();
  cpu::parallel_range(R, cpu::grain_for(2 * C), [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      const T* pr = p.data() + r * C;
      T* g = dp.data() + r * C;
      const T dot = cpu::detail::lane_sum(C, [&](long j) { return pr[j] * g[j]; });
      BIFLOW_IVDEP for (long j = 0; j < C; ++j) g[j] = pr[j] * (g[j] - dot);
    }
  });
}

/// x[r, :] += v[r / group, :]: adds one row per group of `group` consecutive rows (a per-sample embedding
/// added to each of its tokens).
template <class T>
void add_repeat_rows(Tensor<Cpu<T>>& x, const Tensor<Cpu<T>>& v, long group) {
  detail::check_groups("add_repeat_rows", x.rows(), v.rows(), group);
  require_cols("add_repeat_rows", v, x.cols());
  const long C = x.cols();
  cpu::parallel_range(x.rows(), cpu::grain_for(C), [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      T* xr = x.data() + r * C;
      const T* vr = v.data() + (r / group) * C;
      BIFLOW_IVDEP for (long c = 0; c < C; ++c) xr[c] += vr[c];
    }
  });
}
/// (rows / group) x cols: sums of each group of `group` consecutive rows (backward of add_repeat_rows).
template <class T>
Tensor<Cpu<T>> sum_row_groups(const Tensor<Cpu<T>>& x, long group) {
  if (group <= 0 || x.rows() % group != 0)
    throw shape_error(detail::cat("sum_row_groups: ", x.rows(), " rows do not split into groups of ", group));
  Tensor<Cpu<T>> out(x.rows() / group, x.cols());
  const long C = x.cols();
  for (long r = 0; r < x.rows(); ++r) {
    const T* xr = x.data() + r * C;
    T* o = out.data() + (r / group) * C;
    BIFLOW_IVDEP for (long c = 0; c < C; ++c) o[c] += xr[c];
  }
  return out;
}

/// 2-D block copy between buffers: rows x cols elements from src (start src_off, row pitch src_ld) to dst
/// (start dst_off, row pitch dst_ld). Row slices, token writes into a KV cache, and concatenations use it.
template <class T>
void copy_block(const Tensor<Cpu<T>>& src, long src_off, long src_ld, Tensor<Cpu<T>>& dst, long dst_off, long dst_ld,
                long rows, long cols) {
  detail::check_view("copy_block", "source", {src_off, rows, cols, src_ld, 0, 0}, 1, 1, src.size());
  detail::check_view("copy_block", "destination", {dst_off, rows, cols, dst_ld, 0, 0}, 1, 1, dst.size());
  for (long r = 0; r < rows; ++r)
    std::copy_n(src.data() + src_off + r * src_ld, cols, dst.data() + dst_off + r * dst_ld);
}

/// Row-wise layer normalisation: y = (x - mean) * rstd * gamma + beta; saves mean and rstd (rows x 1).
/// Each row is read from memory once (it stays in L1 for its three sweeps) and the row sums run on 16 lanes.
template <class T>
void layernorm_forward(const Tensor<Cpu<T>>& x, const Tensor<Cpu<T>>& gamma, const Tensor<Cpu<T>>& beta, T eps,
                       Tensor<Cpu<T>>& y, Tensor<Cpu<T>>& mean, Tensor<Cpu<T>>& rstd) {
  const long R = x.rows(), C = x.cols();
  y = Tensor<Cpu<T>>(R, C, uninit);
  mean = Tensor<Cpu<T>>(R, 1, uninit);
  rstd = Tensor<Cpu<T>>(R, 1, uninit);
  const T* ga = gamma.data();
  const T* be = beta.data();
  cpu::parallel_range(R, cpu::grain_for(4 * C), [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      const T* xr = x.data() + r * C;
      T* yr = y.data() + r * C;
      const T mu = cpu::detail::lane_sum(C, [&](long c) { return xr[c]; }) / T(C);
      const T var = cpu::detail::lane_sum(C, [&](long c) { return (xr[c] - mu) * (xr[c] - mu); }) / T(C);
      const T rs = T(1) / std::sqrt(var + eps);
      mean.data()[r] = mu;
      rstd.data()[r] = rs;
      BIFLOW_IVDEP for (long c = 0; c < C; ++c) yr[c] = (xr[c] - mu) * rs * ga[c] + be[c];
    }
  });
}
/// Returns dx; accumulates dgamma, dbeta (1 x cols).
template <class T>
Tensor<Cpu<T>> layernorm_backward(const Tensor<Cpu<T>>& x, const Tensor<Cpu<T>>& gamma, const Tensor<Cpu<T>>& mean,
                                  const Tensor<Cpu<T>>& rstd, const Tensor<Cpu<T>>& dy, Tensor<Cpu<T>>& dgamma,
                                  Tensor<Cpu<T>>& dbeta) {
  const long R = x.rows(), C = x.cols();
  require_shape("layernorm_backward: dgamma", dgamma, gamma.rows(), gamma.cols());
  require_shape("layernorm_backward: dbeta", dbeta, gamma.rows(), gamma.cols());
  Tensor<Cpu<T>> dx(R, C, uninit);
  const T* ga = gamma.data();
  cpu::parallel_range(R, cpu::grain_for(6 * C), [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      const T* xr = x.data() + r * C;
      const T* g = dy.data() + r * C;
      T* dxr = dx.data() + r * C;
      const T mu = mean.data()[r], rs = rstd.data()[r];
      // means of dy*gamma and of dy*gamma*xhat
      const T s1 = cpu::detail::lane_sum(C, [&](long c) { return g[c] * ga[c]; }) / T(C);
      const T s2 = cpu::detail::lane_sum(C, [&](long c) { return g[c] * ga[c] * ((xr[c] - mu) * rs); }) / T(C);
      BIFLOW_IVDEP for (long c = 0; c < C; ++c) dxr[c] = rs * (g[c] * ga[c] - s1 - ((xr[c] - mu) * rs) * s2);
    }
  });
  // Parameter gradients: summed over rows in a fixed order (same result for any thread count), vectorised over
  // the columns.
  T* dg = dgamma.data();
  T* db = dbeta.data();
  for (long r = 0; r < R; ++r) {
    const T* xr = x.data() + r * C;
    const T* g = dy.data() + r * C;
    const T mu = mean.data()[r], rs = rstd.data()[r];
    BIFLOW_IVDEP for (long c = 0; c < C; ++c) {
      dg[c] += g[c] * (xr[c] - mu) * rs;
      db[c] += g[c];
    }
  }
  return dx;
}

/// Fills with N(mean, std^2) from the counter-based stream (identical numbers on every backend).
template <class T>
void fill_normal(Tensor<Cpu<T>>& x, Rng& rng, T mean = T(0), T stddev = T(1)) {
  const std::uint64_t base = rng.take(static_cast<std::uint64_t>(x.size()));
  cpu::parallel_range(x.size(), 2048, [&](long lo, long hi) {
    for (long i = lo; i < hi; ++i) x.data()[i] = mean + stddev * static_cast<T>(rng_detail::normal(rng.seed(), base + i));
  });
}
/// Fills with U[lo, hi) from the counter-based stream.
template <class T>
void fill_uniform(Tensor<Cpu<T>>& x, Rng& rng, T lo = T(0), T hi = T(1)) {
  const std::uint64_t base = rng.take(static_cast<std::uint64_t>(x.size()));
  for (long i = 0; i < x.size(); ++i)
    x.data()[i] = rng_detail::uniform_in<T>(lo, hi, rng_detail::uniform01(rng_detail::hash2(rng.seed(), base + i)));
}

/// Inverse of a small square matrix (LU with partial pivoting).
template <class T>
Tensor<Cpu<T>> inverse(const Tensor<Cpu<T>>& a) {
  require_dim("inverse", "columns of a square matrix", a.rows(), a.cols());
  return Tensor<Cpu<T>>(HostMatrix<T>(a.eigen().partialPivLu().inverse()));
}

/// Host index vector -> backend index buffer.
template <class T>
Indices<Cpu<T>> backend_make_indices(backend_tag<Cpu<T>>, std::vector<std::int32_t> v) {
  return Indices<Cpu<T>>(std::move(v));
}

/// Host work is done when the call returns.
template <class T>
void backend_synchronize(backend_tag<Cpu<T>>) {}
/// The process's resident set (VmRSS) and its peak (VmHWM): Cpu tensors are plain heap memory, so the kernel's
/// page count is the honest figure (see cpu/memory.hpp for why not a byte counter). -1 where /proc is missing.
template <class T>
MemoryUsage backend_memory_usage(backend_tag<Cpu<T>>) {
  return {cpu::resident_bytes(), cpu::resident_peak_bytes()};
}
template <class T>
bool backend_reset_peak_memory(backend_tag<Cpu<T>>) {
  return cpu::reset_resident_peak();
}

}  // namespace biflow
