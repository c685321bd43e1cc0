#pragma once
#include <doctest/doctest.h>

#include <unistd.h>

#include <biflow/biflow.hpp>
#include <filesystem>
#include <random>
#include <string>
#include <biflow/testing/checker.hpp>

namespace tests {
using namespace biflow;

/// A directory of this test process's own (pid + random suffix), removed at exit: concurrent test runs never
/// share or overwrite each other's files.
inline const std::filesystem::path& temp_dir() {
  struct Dir {
    std::filesystem::path p;
    Dir() {
      p = std::filesystem::temp_directory_path() /
          ("biflow_test_" + std::to_string(::getpid()) + "_" + std::to_string(std::random_device{}()));
      std::filesystem::create_directories(p);
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  };
  static const Dir d;
  return d.p;
}
/// A path named `name` inside temp_dir().
inline std::string temp_path(const std::string& name) { return (temp_dir() / name).string(); }

template <class B>
Tensor<B> randn(long r, long c, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Tensor<B> t(r, c);
  fill_normal(t, rng, typename B::scalar(0), typename B::scalar(scale));
  return t;
}

/// Replaces every parameter with N(0, scale²) draws so zero-initialised output layers do not hide bugs.
template <class M>
void randomize(M& m, std::uint64_t seed, double scale = 0.3) {
  Rng rng(seed);
  m.visit_parameters([&](const std::string&, auto& p) {
    using T = typename std::decay_t<decltype(p.value)>::scalar;
    fill_normal(p.value, rng, T(0), T(scale));
  }, "");
}

/// The message of the E that f throws, or "<no error>".
template <class E, class Fn>
std::string message(Fn&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no error>";
}

/// The module checks in double: gradients vs finite differences; inference pass and gradient modes exact.
inline void check_module_report(const testing::CheckReport& r) {
  INFO(r.summary());
  CHECK(r.input_grad_error <= 1e-6);
  CHECK(r.param_grad_error <= 1e-6);
  CHECK(r.inference_error <= 1e-12);
  CHECK(r.grad_mode_error <= 1e-12);
  CHECK(r.context_reuse_error <= 1e-12);
}

template <class T>
constexpr double roundtrip_tol() {
  return std::is_same_v<T, double> ? 1e-10 : 1e-5;
}

/// The shared numerical check: in double everything (round trip, log-dets both ways, gradients), in float
/// the round trip and log-det agreement at float tolerance.
/// fd_step: the finite-difference step (0: 1e-5 in double, 1e-2 in float); a map with strong curvature (a
/// spline with narrow bins) needs a smaller one for the truncation error to stay below the tolerances.
template <class L>
void check_layer(const L& layer, const Tensor<typename L::backend>& x, const Tensor<typename L::backend>& cond = {},
                 double fd_step = 0) {
  using T = typename L::backend::scalar;
  if (fd_step <= 0) fd_step = std::is_same_v<T, double> ? 1e-5 : 1e-2;
  const testing::CheckReport r = testing::check_flow_layer(layer, x, cond, {fd_step});
  INFO(r.summary());
  CHECK_FALSE(r.at_identity);  // a layer at the identity passes a wrong log-det: randomise its weights first
  CHECK(r.probes >= 3);
  CHECK(r.inverse_checked == FlowLayer<L>);  // forward-only layers (has_inverse = false) skip only the inverse checks
  CHECK(r.roundtrip_error <= roundtrip_tol<T>());
  CHECK(r.logdet_bruteforce_error <= (std::is_same_v<T, double> ? 1e-10 : 1e-4));
  // The inference pass and the gradient modes run the same arithmetic as the training pass / full backward.
  CHECK(r.inference_error <= (std::is_same_v<T, double> ? 1e-12 : 1e-5));
  CHECK(r.grad_mode_error <= (std::is_same_v<T, double> ? 1e-12 : 1e-5));
  // Trainers keep one context across steps: a used context must give what a fresh one gives.
  CHECK(r.context_reuse_error <= (std::is_same_v<T, double> ? 1e-12 : 1e-5));
  if constexpr (std::is_same_v<T, double>) {
    CHECK(r.logdet_forward_error <= 1e-6);
    CHECK(r.logdet_inverse_error <= 1e-6);
    CHECK(r.input_grad_error <= 1e-6);
    CHECK(r.param_grad_error <= 1e-6);
  } else {
    CHECK(r.logdet_forward_error <= 5e-2);
    CHECK(r.logdet_inverse_error <= 5e-2);
  }
}
}  // namespace tests
