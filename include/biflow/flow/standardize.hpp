#pragma once
// Standardize: per-feature y = (x − mean) ⊙ exp(−log_std) as a flow layer, so a flow trained on standardised data
// reports densities in the data's own units (log-det −Σ log_std) with no hand correction. The statistics are
// buffers (saved, loaded, checked), not parameters: fitted once from data, never trained.
#include <cmath>
#include <vector>

#include "flow_layer.hpp"

namespace biflow {

namespace fn {
struct StdForward {  // (x - m) * exp(-ls)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T m, T ls) const { return (x - m) * std::exp(-ls); }
};
struct StdInverse {  // y * exp(ls) + m
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T y, T m, T ls) const { return y * std::exp(ls) + m; }
};
struct HalfLogOrZero {  // ½ log v, or 0 for a (numerically) constant feature
  double floor;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T v) const { return v > T(floor) ? T(0.5) * std::log(v) : T(0); }
};
}  // namespace fn

template <Backend B>
class Standardize : public FlowLayerBase<Standardize<B>, B> {
 public:
  static constexpr const char* layer_name = "Standardize";
  using T = typename B::scalar;
  struct Context {};  // the Jacobian is constant: backward needs nothing

  Standardize() = default;
  /// The identity on d features until fit (or data_init, or a load) sets the statistics.
  explicit Standardize(long d) : d_(d), mean_(1, d), log_std_(1, d) {}
  /// Given statistics (1 x d each; std > 0).
  static Standardize from_stats(const HostMatrix<T>& mean, const HostMatrix<T>& stddev) {
    if (mean.rows() != 1 || stddev.rows() != 1 || mean.cols() != stddev.cols())
      throw shape_error(detail::cat("Standardize.from_stats: expected two 1 x d rows, got ", mean.rows(), "x",
                                    mean.cols(), " and ", stddev.rows(), "x", stddev.cols()));
    HostMatrix<T> ls(1, stddev.cols());
    for (long j = 0; j < ls.cols(); ++j) {
      if (!(stddev(0, j) > 0) || !std::isfinite(double(stddev(0, j))))
        throw numeric_error(detail::cat("Standardize.from_stats: std of feature ", j, " is ", stddev(0, j),
                                        ", expected a finite positive value"));
      ls(0, j) = std::log(stddev(0, j));
    }
    Standardize s(mean.cols());
    s.mean_ = from_host<B>(mean);
    s.log_std_ = from_host<B>(ls);
    s.fitted_ = true;
    return s;
  }

  long features() const { return d_; }
  long cond_features() const { return 0; }
  bool fitted() const { return fitted_; }
  const Tensor<B>& mean() const { return mean_; }
  const Tensor<B>& log_std() const { return log_std_; }

  /// Per-feature mean and unbiased standard deviation of x (at least 2 rows); a constant feature is centred and
  /// left unscaled.
  void fit(const Tensor<B>& x) {
    require_cols("Standardize.fit", x, d_);
    if (x.rows() < 2) throw shape_error(detail::cat("Standardize.fit: need at least 2 rows, got ", x.rows()));
    if (!all_finite(x)) throw numeric_error("Standardize.fit: the data contain NaN or Inf");
    Tensor<B> m, var;
    col_sum(x, m);
    map(m, fn::Scale{1.0 / double(x.rows())}, m);
    col_sum(zip(fn::SqDiffScaled{1.0 / double(x.rows() - 1)}, x, m), var);
    mean_ = std::move(m);
    log_std_ = zip(fn::HalfLogOrZero{1e-24}, var);
    fitted_ = true;
  }
  /// Sequential::data_init hook: fits from the first batch unless already fitted (or loaded).
  void data_init(const Tensor<B>& x, const Tensor<B>& = {}) {
    if (!fitted_) fit(x);
  }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context*, const Tensor<B>&, bool want_logdet) const {
    return {zip(fn::StdForward{}, x, mean_, log_std_),
            want_logdet ? repeated_logdet(log_std_, x.rows(), -1.0) : Tensor<B>{}};
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>&, bool want_logdet) const {
    return {zip(fn::StdInverse{}, y, mean_, log_std_),
            want_logdet ? repeated_logdet(log_std_, y.rows(), 1.0) : Tensor<B>{}};
  }
  Tensor<B> backward(const Context&, const Tensor<B>& dy, const Tensor<B>& dlogdet, GradMode mode = GradMode::all) {
    require_cols("Standardize.backward: dy", dy, d_);
    require_shape("Standardize.backward: dlogdet", dlogdet, dy.rows(), 1);
    if (!wants_input_grad(mode)) return {};
    return zip(fn::MulExpNeg{}, dy, log_std_);
  }
  template <class V>
  void visit_parameters(V&&, const std::string&) {}
  /// "mean", "log_std" (fitted statistics: state, always loaded) and "fitted" (a flag).
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "mean"), tensor_buffer(mean_, [this](Tensor<B> t) { mean_ = std::move(t); }, false));
    v(join_name(prefix, "log_std"), tensor_buffer(log_std_, [this](Tensor<B> t) { log_std_ = std::move(t); }, false));
    v(join_name(prefix, "fitted"), flag_buffer(fitted_, [this](bool b) { fitted_ = b; }));
  }

 private:
  long d_ = 0;
  Tensor<B> mean_, log_std_;
  bool fitted_ = false;
};

}  // namespace biflow
