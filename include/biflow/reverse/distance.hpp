#pragma once
// Distance policies D(pred, target) for training the learned reverse model. A distance gives one value per
// row (per sample: mean over that row's features) and the gradient of Σ_n w_n·D_n with respect to pred for
// per-row weights w (N x 1). The batch loss is the mean over rows; reweighting (Adaptive) and sums of
// distances (Sum) are distances too, so they compose at compile time:
//   Sum<Mse, Feature<MyNet, Mse>>, Adaptive<Mse>, …
#include <cmath>
#include <concepts>
#include <string>

#include "../backend/ops.hpp"
#include "../core/errors.hpp"

namespace biflow {

namespace fn {
struct AbsF {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x) const { return x < T(0) ? -x : x; }
};
struct SignDiffScaled {  // w·sign(a − b)·s
  double s;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T w) const {
    const T d = a - b;
    return (d > T(0) ? T(1) : d < T(0) ? T(-1) : T(0)) * w * T(s);
  }
};
struct DiffScaled {  // w·(a − b)·s
  double s;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T w) const { return (a - b) * w * T(s); }
};
struct SqDiff {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b) const { return (a - b) * (a - b); }
};
struct AbsDiff {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b) const { return a > b ? a - b : b - a; }
};
struct HuberValue {  // ½r² inside δ, δ(|r| − ½δ) outside
  double delta;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b) const {
    const T r = a > b ? a - b : b - a, d = T(delta);
    return r <= d ? T(0.5) * r * r : d * (r - T(0.5) * d);
  }
};
struct HuberGrad {  // w·clamp(a − b, −δ, δ)·s
  double delta, s;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T w) const {
    T r = a - b;
    const T d = T(delta);
    r = r > d ? d : r < -d ? -d : r;
    return r * w * T(s);
  }
};
struct CosineValue {  // 1 − ab / (|a||b|), norms floored at eps
  double eps;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T ab, T aa, T bb) const {
    const T na = std::sqrt(aa) > T(eps) ? std::sqrt(aa) : T(eps), nb = std::sqrt(bb) > T(eps) ? std::sqrt(bb) : T(eps);
    return T(1) - ab / (na * nb);
  }
};
/// d(1 − cos)/da = −(b/(|a||b|) − (ab) a/(|a|³|b|)), times w.
struct CosineGrad {
  double eps;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T ab, T aa, T bb, T w) const {
    const T na = std::sqrt(aa) > T(eps) ? std::sqrt(aa) : T(eps), nb = std::sqrt(bb) > T(eps) ? std::sqrt(bb) : T(eps);
    return -w * (b / (na * nb) - ab * a / (na * na * na * nb));
  }
};
struct AdaptiveWeight {  // w / (d + c)^p, the stop-gradient reweighting
  double p, c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T w, T d) const { return w / std::pow(d + T(c), T(p)); }
};
}  // namespace fn

/// A distance between row batches. `per_row(a, b)` is N x 1; `grad(a, b, w)` is ∂(Σ w_n D_n)/∂a, a's shape.
template <class D, class B>
concept Distance = requires(const D& d, const Tensor<B>& a) {
  { d.per_row(a, a) } -> std::same_as<Tensor<B>>;
  { d.grad(a, a, a) } -> std::same_as<Tensor<B>>;
  { d.name() } -> std::convertible_to<std::string>;
};

namespace detail {
template <class B>
void check_distance_args(const char* what, const Tensor<B>& a, const Tensor<B>& b) {
  require_shape(detail::cat(what, ": target").c_str(), b, a.rows(), a.cols());
  if (a.cols() == 0) throw shape_error(detail::cat(what, ": rows have no features"));
}
}  // namespace detail

/// Mean squared error per row: mean_j (a_j − b_j)².
struct Mse {
  std::string name() const { return "mse"; }
  template <Backend B>
  Tensor<B> per_row(const Tensor<B>& a, const Tensor<B>& b) const {
    detail::check_distance_args("Mse", a, b);
    return zip(fn::Scale{1.0 / double(a.cols())}, row_sum(zip(fn::SqDiff{}, a, b)));
  }
  template <Backend B>
  Tensor<B> grad(const Tensor<B>& a, const Tensor<B>& b, const Tensor<B>& w) const {
    return zip(fn::DiffScaled{2.0 / double(a.cols())}, a, b, w);
  }
};

/// Mean absolute error per row (subgradient 0 at equality).
struct L1 {
  std::string name() const { return "l1"; }
  template <Backend B>
  Tensor<B> per_row(const Tensor<B>& a, const Tensor<B>& b) const {
    detail::check_distance_args("L1", a, b);
    return zip(fn::Scale{1.0 / double(a.cols())}, row_sum(zip(fn::AbsDiff{}, a, b)));
  }
  template <Backend B>
  Tensor<B> grad(const Tensor<B>& a, const Tensor<B>& b, const Tensor<B>& w) const {
    return zip(fn::SignDiffScaled{1.0 / double(a.cols())}, a, b, w);
  }
};

/// Huber (smooth L1) per row: quadratic within δ of the target, linear outside; mean over features.
struct Huber {
  double delta = 1.0;
  std::string name() const { return "huber"; }
  template <Backend B>
  Tensor<B> per_row(const Tensor<B>& a, const Tensor<B>& b) const {
    detail::check_distance_args("Huber", a, b);
    if (!(delta > 0)) throw usage_error(detail::cat("Huber: delta must be positive, got ", delta));
    return zip(fn::Scale{1.0 / double(a.cols())}, row_sum(zip(fn::HuberValue{delta}, a, b)));
  }
  template <Backend B>
  Tensor<B> grad(const Tensor<B>& a, const Tensor<B>& b, const Tensor<B>& w) const {
    return zip(fn::HuberGrad{delta, 1.0 / double(a.cols())}, a, b, w);
  }
};

/// Cosine distance per row: 1 − cos(a, b), in [0, 2]; blind to scale, so pair it with Mse (Sum) when
/// magnitudes matter. Norms below eps are floored (a zero row has distance 1, not NaN).
struct Cosine {
  double eps = 1e-8;
  std::string name() const { return "cosine"; }
  template <Backend B>
  Tensor<B> per_row(const Tensor<B>& a, const Tensor<B>& b) const {
    detail::check_distance_args("Cosine", a, b);
    return zip(fn::CosineValue{eps}, row_sum(zip(fn::Mul{}, a, b)), row_sum(zip(fn::Square{}, a)),
               row_sum(zip(fn::Square{}, b)));
  }
  template <Backend B>
  Tensor<B> grad(const Tensor<B>& a, const Tensor<B>& b, const Tensor<B>& w) const {
    return zip(fn::CosineGrad{eps}, a, b, row_sum(zip(fn::Mul{}, a, b)), row_sum(zip(fn::Square{}, a)),
               row_sum(zip(fn::Square{}, b)), w);
  }
};

/// wa·A + wb·B (e.g. MSE plus a feature distance).
template <class A, class Bd>
struct Sum {
  A a{};
  Bd b{};
  double wa = 1.0, wb = 1.0;
  std::string name() const { return a.name() + "+" + b.name(); }
  template <Backend B>
  Tensor<B> per_row(const Tensor<B>& x, const Tensor<B>& y) const {
    return zip(fn::Axpby{wa, wb}, a.per_row(x, y), b.per_row(x, y));
  }
  template <Backend B>
  Tensor<B> grad(const Tensor<B>& x, const Tensor<B>& y, const Tensor<B>& w) const {
    Tensor<B> g = a.grad(x, y, zip(fn::Scale{wa}, w));
    add_inplace(g, b.grad(x, y, zip(fn::Scale{wb}, w)));
    return g;
  }
};

/// Adaptive reweighting D / sg((D + c)^p): the value reported is D itself, the gradient of each row is
/// scaled by 1/(D_n + c)^p, so rows that are already close do not dominate (p = 1: roughly a log-distance).
template <class Inner>
struct Adaptive {
  Inner inner{};
  double p = 0.5, c = 1e-3;
  std::string name() const { return "adaptive(" + inner.name() + ")"; }
  template <Backend B>
  Tensor<B> per_row(const Tensor<B>& x, const Tensor<B>& y) const {
    return inner.per_row(x, y);
  }
  template <Backend B>
  Tensor<B> grad(const Tensor<B>& x, const Tensor<B>& y, const Tensor<B>& w) const {
    if (!(c > 0)) throw usage_error(detail::cat("Adaptive: c must be positive, got ", c));
    return inner.grad(x, y, zip(fn::AdaptiveWeight{p, c}, w, inner.per_row(x, y)));
  }
};

/// Batch loss mean_n D_n and its gradient scaled by `weight` / N: the one call the trainer makes.
template <Backend B, class D>
double distance_loss(const D& d, const Tensor<B>& pred, const Tensor<B>& target, double weight, Tensor<B>& dpred) {
  static_assert(Distance<D, B>, "distance policy: needs `Tensor<B> per_row(pred, target) const` (N x 1), "
                                "`Tensor<B> grad(pred, target, w) const` and `std::string name() const`");
  const Tensor<B> v = d.per_row(pred, target);
  const double loss = double(sum(v)) / double(pred.rows());
  dpred = d.grad(pred, target, constant<B>(pred.rows(), 1, typename B::scalar(weight / double(pred.rows()))));
  return loss;
}

}  // namespace biflow
