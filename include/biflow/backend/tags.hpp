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

/// Backend tag: NVIDIA GPU via cuBLAS and biflow's own kernels (float only).
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

/// Declares a tag type a backend. The set is open: for your own tag (with `using scalar` and a `name`),
/// specialise `biflow::backend_traits<YourTag>` with `declared = true`, specialise `biflow::Tensor<YourTag>` and
/// `biflow::Indices<YourTag>`, and provide the primitives `check_backend<YourTag>()` lists (found by
/// argument-dependent lookup, so they may live in your namespace). docs/backends.md walks through it.
template <class B>
struct backend_traits {
  static constexpr bool declared = false;
};
template <class T>
struct backend_traits<Cpu<T>> {
  static constexpr bool declared = true;
};
template <class T>
struct backend_traits<Cuda<T>> {
  static constexpr bool declared = true;
};

/// A backend: a declared tag type with a scalar type and a name.
template <class B>
concept Backend = backend_traits<B>::declared && requires {
  typename B::scalar;
  { B::name } -> std::convertible_to<const char*>;
};

/// Carries a backend through argument-dependent lookup for primitives that take no tensor (uploads, index
/// buffers, synchronisation, memory figures): `from_host<B>(m)` calls `backend_from_host(backend_tag<B>{}, m)`,
/// which finds overloads in B's own namespace.
template <class B>
struct backend_tag {
  using backend = B;
};

}  // namespace biflow
