// custom_flow: writing your own flow layer outside the library.
//
// The layer is the sinh-arcsinh transform (Jones & Pewsey 2009), elementwise per feature:
//     y = sinh(δ·asinh(x) − ε),  δ = exp(log_delta) > 0
// which bends tails (δ) and skews (ε) — something affine couplings do poorly. This file shows the three
// steps every biflow layer goes through:
//   1. write forward_impl / inverse_impl / backward against backend primitives (zip/map/row_sum/col_sum),
//      deriving from FlowLayerBase (which adds shape checks and the log-det policies);
//   2. verify it with biflow::testing::check_flow_layer (round trip, log-det vs brute force, gradients);
//   3. compose it with library layers and train it.
#include <biflow/biflow.hpp>
#include <biflow/testing/checker.hpp>
#include <cmath>
#include <cstdio>

namespace my {
using namespace biflow;

// Elementwise math as host+device functors, so the same layer would also run on Cuda<float>.
struct SasFwd {  // y = sinh(δ asinh(x) − ε)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T ld, T eps) const { return std::sinh(std::exp(ld) * std::asinh(x) - eps); }
};
struct SasInv {  // x = sinh((asinh(y) + ε) / δ)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T y, T ld, T eps) const { return std::sinh((std::asinh(y) + eps) * std::exp(-ld)); }
};
struct SasLogJac {  // log dy/dx = log cosh(u) + log δ − ½ log(1 + x²)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T ld, T eps) const {
    const T u = std::exp(ld) * std::asinh(x) - eps;
    return std::log(std::cosh(u)) + ld - T(0.5) * std::log1p(x * x);
  }
};
struct SasDx {  // dy·cosh(u)·δ/√(1+x²) + dl·(tanh(u)·δ/√(1+x²) − x/(1+x²))
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T ld, T eps, T dy, T dl) const {
    const T d = std::exp(ld), u = d * std::asinh(x) - eps, r = T(1) / std::sqrt(T(1) + x * x);
    return dy * std::cosh(u) * d * r + dl * (std::tanh(u) * d * r - x * r * r);
  }
};
struct SasDeps {  // −dy·cosh(u) − dl·tanh(u)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T ld, T eps, T dy, T dl) const {
    const T u = std::exp(ld) * std::asinh(x) - eps;
    return -dy * std::cosh(u) - dl * std::tanh(u);
  }
};
struct SasDlogDelta {  // δ·asinh(x)·(dy·cosh(u) + dl·tanh(u)) + dl
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T ld, T eps, T dy, T dl) const {
    const T d = std::exp(ld), a = std::asinh(x), u = d * a - eps;
    return d * a * (dy * std::cosh(u) + dl * std::tanh(u)) + dl;
  }
};

template <Backend B>
class SinhArcsinh : public FlowLayerBase<SinhArcsinh<B>, B> {
 public:
  static constexpr const char* layer_name = "SinhArcsinh";
  struct Context {
    Tensor<B> x;
  };
  explicit SinhArcsinh(long d) : d_(d), log_delta(Tensor<B>(1, d)), epsilon(Tensor<B>(1, d)) {}  // starts as identity

  long features() const { return d_; }
  long cond_features() const { return 0; }

  // ctx == nullptr: the inference pass (log_prob, sampling checks), which saves nothing.
  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>&, bool want_logdet) const {
    if (ctx) ctx->x = x;
    return {zip(SasFwd{}, x, log_delta.value, epsilon.value),
            want_logdet ? row_sum(zip(SasLogJac{}, x, log_delta.value, epsilon.value)) : Tensor<B>{}};
  }
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>&, bool want_logdet) const {
    Tensor<B> x = zip(SasInv{}, y, log_delta.value, epsilon.value);
    Tensor<B> ld;
    if (want_logdet) ld = zip(fn::Neg{}, row_sum(zip(SasLogJac{}, x, log_delta.value, epsilon.value)));
    return {std::move(x), std::move(ld)};
  }
  // mode: GradMode::input_only must leave the parameters' gradients alone (score of a frozen flow), and a
  // frozen parameter gets none; under params_only the input gradient may be skipped.
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet, GradMode mode = GradMode::all) {
    const auto& x = ctx.x;
    if (wants_grad(mode, epsilon))
      col_sum(zip(SasDeps{}, x, log_delta.value, epsilon.value, dy, dlogdet), epsilon.grad, typename B::scalar(1));
    if (wants_grad(mode, log_delta))
      col_sum(zip(SasDlogDelta{}, x, log_delta.value, epsilon.value, dy, dlogdet), log_delta.grad,
              typename B::scalar(1));
    if (!wants_input_grad(mode)) return {};
    return zip(SasDx{}, x, log_delta.value, epsilon.value, dy, dlogdet);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    v(join_name(prefix, "log_delta"), log_delta);
    v(join_name(prefix, "epsilon"), epsilon);
  }

 private:
  long d_;

 public:
  Parameter<B> log_delta, epsilon;
};
}  // namespace my

using namespace biflow;

/// Heavy-tailed, skewed 2-D data: a Student-t(ν=3)-like radius times a direction, with one axis skewed.
HostMatrix<double> heavy_tailed(long n, Rng& rng) {
  HostMatrix<double> x(n, 2);
  for (long i = 0; i < n; ++i) {
    double chi = 0;
    for (int k = 0; k < 3; ++k) {
      const double g = rng.normal();
      chi += g * g;
    }
    const double s = std::sqrt(3.0 / std::max(chi, 1e-3));
    const double a = rng.normal() * s, b = rng.normal() * s;
    x(i, 0) = a;
    x(i, 1) = 0.5 * a + b + 0.3 * b * b;
  }
  return x;
}

/// Trains on shuffled mini-batches (every row once per epoch) and returns the test NLL in nats. The flows start with
/// a Standardize layer, so that NLL is in the data's own units with no hand correction.
template <class Flow>
double train(Flow& flow, const HostMatrix<double>& train_x, const HostMatrix<double>& test_x, long steps) {
  using F = Cpu<float>;
  layer<0>(flow).fit(from_host<F>(train_x.cast<float>()));
  TrainOptions o;
  o.total_steps = steps;
  o.lr = 2e-3;
  o.verbose = false;
  MleTrainer<Flow> t(flow, o);
  data::BatchSampler batches(train_x.rows(), 256, data::Sampling::epochs, 5);
  for (long s = 0; s < steps; ++s) t.step(from_host<F>(data::take_rows(train_x, batches.next()).cast<float>()));
  return nll(flow, from_host<F>(test_x.cast<float>()));
}

int main() {
  // 1. Verify the layer the way every library layer is verified (double precision).
  {
    using D = Cpu<double>;
    my::SinhArcsinh<D> layer(3);
    Rng r(1);
    fill_normal(layer.log_delta.value, r, 0.0, 0.3);
    fill_normal(layer.epsilon.value, r, 0.0, 0.5);
    Tensor<D> x(8, 3);
    fill_normal(x, r);
    const testing::CheckReport rep = testing::check_flow_layer(layer, x);
    std::printf("checker on SinhArcsinh (double): %s\n", rep.summary().c_str());
    const bool ok = rep.roundtrip_error < 1e-10 && rep.logdet_forward_error < 1e-6 && rep.logdet_inverse_error < 1e-6 &&
                    rep.input_grad_error < 1e-6 && rep.param_grad_error < 1e-6 &&
                    rep.inference_error <= 1e-12 && rep.grad_mode_error <= 1e-12;
    std::printf("  -> %s\n", ok ? "passes" : "FAILS");
    if (!ok) return 1;
  }
  // 2. Compose it with library layers and train, against the same flow without it.
  using F = Cpu<float>;
  Rng data(2), tdata(3), init(4), init2(4);
  const HostMatrix<double> train_x = heavy_tailed(8000, data), test_x = heavy_tailed(4000, tdata);
  using Couplings = Repeat<4, AffineCoupling<F>>;
  auto couplings = [](Rng& r) {
    return Couplings([&](std::size_t i) { return make_coupling<F>(masks::half(2, int(i % 2)), {32, 32}, r); });
  };
  Sequential<Standardize<F>, my::SinhArcsinh<F>, Couplings, my::SinhArcsinh<F>> with(
      Standardize<F>(2), my::SinhArcsinh<F>(2), couplings(init), my::SinhArcsinh<F>(2));
  Sequential<Standardize<F>, Couplings> without(Standardize<F>(2), couplings(init2));
  const long steps = 1500;
  const double a = train(with, train_x, test_x, steps);
  const double b = train(without, train_x, test_x, steps);
  std::printf("heavy-tailed 2-D data, %ld steps: test NLL with SinhArcsinh layers %.4f, couplings only %.4f, "
              "Gaussian %.4f nats\n", steps, a, b, data::gaussian_nll(train_x, test_x));
  return 0;
}
