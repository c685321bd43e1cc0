#pragma once
// Quantised images with class labels (e.g. the vendored 8x8 digits): loading with validation, and uniform
// dequantisation to [-1, 1], the continuous data a flow's density (and bits/dim) is defined on.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../core/rng.hpp"
#include "csv.hpp"

namespace biflow::data {

struct LabeledImages {
  HostMatrix<float> pixels;  ///< rows x (C·H·W), integer levels 0 .. levels-1
  std::vector<int> labels;
  long levels = 0;
  long rows() const { return pixels.rows(); }
  /// Rows [r0, r0 + n).
  LabeledImages slice(long r0, long n) const {
    if (r0 < 0 || n < 0 || r0 + n > rows())
      throw usage_error(detail::cat("LabeledImages.slice: rows [", r0, ", ", r0 + n, ") out of range for ", rows()));
    return {pixels.middleRows(r0, n), std::vector<int>(labels.begin() + r0, labels.begin() + r0 + n), levels};
  }
};

/// CSV rows of `features` integer pixel values in [0, levels) followed by an integer label in [0, classes).
/// Errors name the line and column of the first bad value.
inline LabeledImages load_labeled_images(const std::string& path, long features, long levels, long classes) {
  const HostMatrix<double> m = load_csv(path);
  if (m.cols() != features + 1)
    throw io_error(detail::cat("load_labeled_images: '", path, "' has ", m.cols(), " columns, expected ", features,
                               " pixels + 1 label"));
  LabeledImages d{HostMatrix<float>(m.rows(), features), std::vector<int>(std::size_t(m.rows())), levels};
  for (long r = 0; r < m.rows(); ++r) {
    for (long c = 0; c <= features; ++c) {
      const double v = m(r, c), hi = c < features ? double(levels) : double(classes);
      if (v != std::floor(v) || v < 0 || v >= hi)
        throw io_error(detail::cat("load_labeled_images: '", path, "' data row ", r + 1, " column ", c + 1, ": ", v,
                                   " is not an integer in [0, ", hi, ")", c < features ? " (pixel)" : " (label)"));
    }
    d.pixels.row(r) = m.row(r).head(features).cast<float>();
    d.labels[std::size_t(r)] = int(m(r, features));
  }
  return d;
}

/// The vendored 8x8 digits (data/digits.csv): 64 pixels in 0..16, label 0..9.
inline LabeledImages load_digits(const std::string& path) { return load_labeled_images(path, 64, 17, 10); }

/// x = 2·(v + u)/levels − 1 with u ~ U[0, 1) per value: continuous data in [-1, 1). Its density relates to the
/// discrete one through the per-dimension scale 2/levels (see bits_per_dim).
inline HostMatrix<float> dequantize(const HostMatrix<float>& v, long levels, Rng& rng) {
  HostMatrix<float> x(v.rows(), v.cols());
  const float s = 2.0f / float(levels);
  for (long i = 0; i < v.size(); ++i) x.data()[i] = s * (v.data()[i] + float(rng.uniform())) - 1.0f;
  return x;
}
inline double dequantize_scale(long levels) { return 2.0 / double(levels); }

/// The inverse of dequantize for generated samples: each value of x in [-1, 1] (values outside are clamped) goes
/// to its level v in 0 .. levels-1 (the bin it falls in), returned as the level, not the pixel value. Samples are
/// quantised like this before evaluation, as generated images are to 8 bits before FID: the dequantisation noise
/// is not part of the data.
inline HostMatrix<float> quantize(const HostMatrix<float>& x, long levels) {
  if (levels < 2) throw usage_error(detail::cat("quantize: levels must be at least 2, got ", levels));
  HostMatrix<float> v(x.rows(), x.cols());
  const double s = 2.0 / double(levels);
  for (long i = 0; i < x.size(); ++i) {
    const double xi = double(x.data()[i]);
    if (!std::isfinite(xi))
      throw usage_error(detail::cat("quantize: value ", i, " is ", xi, "; samples must be finite"));
    v.data()[i] = float(std::clamp(std::floor((xi + 1.0) / s), 0.0, double(levels - 1)));
  }
  return v;
}
/// Level v → the centre of its bin in [-1, 1]: 2·(v + 1/2)/levels − 1.
inline HostMatrix<float> level_centers(const HostMatrix<float>& v, long levels) {
  return ((v.array() + 0.5f) * float(2.0 / double(levels)) - 1.0f).matrix();
}

}  // namespace biflow::data
