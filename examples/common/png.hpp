#pragma once
// Writing RGB images for the examples' plots (stb_image_write from Debian's libstb-dev).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <biflow/core/errors.hpp>
#include <biflow/backend/tensor.hpp>

namespace examples {

struct Image {
  int w, h;
  std::vector<std::uint8_t> rgb;
  Image(int w_, int h_) : w(w_), h(h_), rgb(std::size_t(w_) * h_ * 3, 255) {}
  void set(int x, int y, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    auto* p = &rgb[(std::size_t(y) * w + x) * 3];
    p[0] = r, p[1] = g, p[2] = b;
  }
  /// Pastes other at (x0, y0).
  void paste(const Image& o, int x0, int y0) {
    for (int y = 0; y < o.h; ++y)
      for (int x = 0; x < o.w; ++x) {
        const auto* p = &o.rgb[(std::size_t(y) * o.w + x) * 3];
        set(x0 + x, y0 + y, p[0], p[1], p[2]);
      }
  }
};

/// A perceptual-ish dark-to-bright colormap (approximates "magma") for t in [0, 1].
inline void colormap(double t, std::uint8_t& r, std::uint8_t& g, std::uint8_t& b) {
  t = std::clamp(t, 0.0, 1.0);
  r = std::uint8_t(255 * std::clamp(-0.02 + 1.2 * t, 0.0, 1.0));
  g = std::uint8_t(255 * std::clamp(1.25 * t * t - 0.05, 0.0, 1.0));
  b = std::uint8_t(255 * std::clamp(0.1 + 0.9 * std::sin(3.14159 * t * 0.9) * (1 - 0.3 * t), 0.0, 1.0));
}

/// Heat map of a grid of non-negative values (rows = y from top).
inline Image heatmap(const biflow::HostMatrix<double>& v) {
  Image img(int(v.cols()), int(v.rows()));
  const double mx = std::max(v.maxCoeff(), 1e-300);
  for (int y = 0; y < img.h; ++y)
    for (int x = 0; x < img.w; ++x) {
      std::uint8_t r, g, b;
      colormap(std::sqrt(v(y, x) / mx), r, g, b);  // sqrt: shows low-density structure too
      img.set(x, y, r, g, b);
    }
  return img;
}

/// 2-D histogram of points in [lo, hi]² on an n x n grid (y axis up).
inline biflow::HostMatrix<double> histogram2d(const biflow::HostMatrix<double>& pts, double lo0, double hi0, double lo1,
                                              double hi1, int n) {
  biflow::HostMatrix<double> h = biflow::HostMatrix<double>::Zero(n, n);
  for (long i = 0; i < pts.rows(); ++i) {
    const int x = int((pts(i, 0) - lo0) / (hi0 - lo0) * n), y = int((pts(i, 1) - lo1) / (hi1 - lo1) * n);
    if (x >= 0 && y >= 0 && x < n && y < n) h(n - 1 - y, x) += 1;
  }
  return h;
}

void write_png(const std::string& path, const Image& img);

}  // namespace examples
