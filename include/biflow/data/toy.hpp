#pragma once
// Built-in 2-D toy densities (the FFJORD / normflows classics), drawn from biflow's counter-based Rng so
// a seed gives the same points on every platform.
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "../backend/tensor.hpp"
#include "../core/rng.hpp"

namespace biflow::data {

inline const std::vector<std::string>& toy_names() {
  static const std::vector<std::string> names{"moons", "8gaussians", "checkerboard", "rings"};
  return names;
}

/// n points of the named toy set, one per row (n x 2, double).
inline HostMatrix<double> toy(const std::string& name, long n, Rng& rng) {
  HostMatrix<double> x(n, 2);
  const double pi = std::numbers::pi;
  for (long i = 0; i < n; ++i) {
    double a = 0, b = 0;
    if (name == "moons") {  // two interleaved half circles, noise 0.1
      const double t = pi * rng.uniform();
      if (rng.below(2) == 0) a = std::cos(t), b = std::sin(t);
      else a = 1 - std::cos(t), b = 0.5 - std::sin(t);
      a += 0.1 * rng.normal();
      b += 0.1 * rng.normal();
    } else if (name == "8gaussians") {  // 8 modes on a circle of radius 4/√2, std 0.5/√2
      const double ang = 2 * pi * double(rng.below(8)) / 8;
      a = (4 * std::cos(ang) + 0.5 * rng.normal()) / std::numbers::sqrt2;
      b = (4 * std::sin(ang) + 0.5 * rng.normal()) / std::numbers::sqrt2;
    } else if (name == "checkerboard") {  // 8 squares of a 4x4 board on [-4, 4]²
      const double x1 = rng.uniform() * 4 - 2;
      const double x2 = rng.uniform() - 2.0 * double(rng.below(2)) + double(long(std::floor(x1)) & 1);
      a = 2 * x1, b = 2 * x2;
    } else if (name == "rings") {  // 4 concentric rings, radii 0.75..3, noise 0.08
      const double r = 0.75 * double(1 + rng.below(4));
      const double ang = 2 * pi * rng.uniform();
      a = r * std::cos(ang) + 0.08 * rng.normal();
      b = r * std::sin(ang) + 0.08 * rng.normal();
    } else {
      throw usage_error(detail::cat("data::toy: unknown data set '", name, "'; expected one of moons, 8gaussians, "
                                    "checkerboard, rings"));
    }
    x(i, 0) = a;
    x(i, 1) = b;
  }
  return x;
}

}  // namespace biflow::data
