#pragma once
#include <concepts>
#include <type_traits>

namespace biflow {

/// Backend tag: host computation on Eigen, in float or double.
template <class T = float>
struct Cpu {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "biflow::Cpu<T>: T must be float or double.");
  using scalar = T;
  static constexpr const char* name = "Cpu";
};

/// Backend tag: NVIDIA GPU via cuBLAS, Thrust and biflow's own kernels (float only).
/// Usable only in translation units compiled by nvcc that include <biflow/biflow.hpp>.
template <class T = float>
struct Cuda {
  static_assert(std::is_same_v<T, float>, "biflow::Cuda<T>: only float is supported on the GPU.");
  using scalar = T;
  static constexpr const char* name = "Cuda";
};

template <class B>
struct is_cpu : std::false_type {};
template <class T>
struct is_cpu<Cpu<T>> : std::true_type {};
template <class B>
struct is_cuda : std::false_type {};
template <class T>
struct is_cuda<Cuda<T>> : std::true_type {};

/// A backend is one of the tag types above.
template <class B>
concept Backend = is_cpu<B>::value || is_cuda<B>::value;

}  // namespace biflow
