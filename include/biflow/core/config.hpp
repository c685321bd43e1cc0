#pragma once
// Portability macros shared by host and device code.

// biflow splits large GEMMs across OpenMP threads itself (backend/cpu/ops.hpp); Eigen's own threading would also
// fire on the many small products of a flow step, where waking threads costs more than it saves. Every biflow
// header includes this one before Eigen (this only takes effect if your code has not included Eigen already).
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
#if defined(__CUDACC__)
#define BIFLOW_HOST_DEVICE __host__ __device__
#else
#define BIFLOW_HOST_DEVICE
#endif
// 1 while compiling device code (nvcc's device pass), 0 otherwise: the one place biflow tests __CUDA_ARCH__, so
// host-only fast paths in shared functors read `#if !BIFLOW_DEVICE_COMPILE`.
#if defined(__CUDA_ARCH__)
#define BIFLOW_DEVICE_COMPILE 1
#else
#define BIFLOW_DEVICE_COMPILE 0
#endif

// Tells the compiler a loop's iterations are independent (outputs never alias inputs at another index),
// so elementwise loops vectorise.
#if defined(__clang__)
#define BIFLOW_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define BIFLOW_IVDEP _Pragma("GCC ivdep")
#else
#define BIFLOW_IVDEP
#endif

// On the Cpu backend's elementwise loop bodies: inline every call inside (the functor, its activation, fastmath's
// exp), so the loop vectorises whatever GCC's inlining budget decides for the translation unit. Measured: when a
// change elsewhere made GCC stop inlining GELU's derivative, the TARFlow step went from 80 to 106 ms.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define BIFLOW_FLATTEN __attribute__((flatten))
#else
#define BIFLOW_FLATTEN
#endif

namespace biflow {
// Lets a static_assert in a discarded `if constexpr` branch or primary template depend on T,
// so the message fires only when the branch is actually instantiated.
template <class...>
inline constexpr bool dependent_false = false;
}  // namespace biflow
