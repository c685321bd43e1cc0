#pragma once
#include <algorithm>
#include <cmath>
#include <numbers>

namespace biflow {

/// Linear warm-up from 0 to base_lr over `warmup` steps, then cosine (or, with `linear`, straight-line) decay to
/// min_fraction·base_lr at `total`.
struct CosineSchedule {
  double base_lr = 1e-3;
  long warmup = 0;
  long total = 1;
  double min_fraction = 0.0;
  bool linear = false;
  /// Learning rate for step (0-based).
  double operator()(long step) const {
    if (warmup > 0 && step < warmup) return base_lr * double(step + 1) / double(warmup);
    const double span = double(std::max<long>(1, total - warmup));
    const double p = std::clamp(double(step - warmup) / span, 0.0, 1.0);
    if (linear) return base_lr * (min_fraction + (1 - min_fraction) * (1 - p));
    return base_lr * (min_fraction + (1 - min_fraction) * 0.5 * (1 + std::cos(std::numbers::pi * p)));
  }
};

}  // namespace biflow
