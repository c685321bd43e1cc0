#pragma once
// A small MLP classifier for evaluating samples (class accuracy, Fréchet distance of its features) and as the
// frozen network of a Feature distance. sizes = {in, hidden…, features, classes}: the features are the ReLU
// activations before the last Linear (64 → 128 → 64 → 10 on the digits, see docs/experiments.md).
#include <algorithm>
#include <vector>

#include "../nn/activation.hpp"
#include "../nn/linear.hpp"
#include "../nn/mlp.hpp"
#include "../train/optimization.hpp"
#include "../train/cross_entropy.hpp"

namespace biflow {

/// The trunk of MlpClassifier as an nn Module: x -> ReLU(MLP(x)), the penultimate features.
template <Backend B>
class MlpFeatures {
 public:
  using backend = B;
  struct Context {
    typename MLP<B, act::ReLU>::Context mlp;
    typename Activation<B, act::ReLU>::Context act;
  };
  MlpFeatures() = default;
  MlpFeatures(std::vector<long> sizes, Rng& rng) : mlp(std::move(sizes), rng), act(mlp.out_features()) {}
  long in_features() const { return mlp.in_features(); }
  long out_features() const { return mlp.out_features(); }
  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return act.forward(mlp.forward(x, ctx.mlp), ctx.act); }
  Tensor<B> forward(const Tensor<B>& x) const { return act.forward(mlp.forward(x)); }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    return mlp.backward(ctx.mlp, act.backward(ctx.act, dy, inner(mode)), mode);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    mlp.visit_parameters(v, prefix);
  }
  MLP<B, act::ReLU> mlp;
  Activation<B, act::ReLU> act;
};

template <Backend B>
class MlpClassifier {
 public:
  using backend = B;
  using T = typename B::scalar;
  MlpClassifier() = default;
  /// sizes = {in, hidden…, features, classes}, at least {in, features, classes}.
  MlpClassifier(std::vector<long> sizes, Rng& rng) {
    if (sizes.size() < 3)
      throw usage_error(detail::cat("MlpClassifier: need {in, features, classes} at least, got ", sizes.size(),
                                    " sizes"));
    const long classes = sizes.back();
    sizes.pop_back();
    features = MlpFeatures<B>(sizes, rng);
    head = Linear<B>(sizes.back(), classes, rng);
  }
  long in_features() const { return features.in_features(); }
  long classes() const { return head.out_features(); }

  Tensor<B> logits(const Tensor<B>& x) const { return head.forward(features.forward(x)); }
  Tensor<B> feature_rows(const Tensor<B>& x) const { return features.forward(x); }
  /// One step of softmax cross-entropy on (x, one-hot targets) with the shared optimiser step (clipping, NaN guard,
  /// schedule, AdamW, EMA as `opt`'s options say); returns the loss.
  double train_step(const Tensor<B>& x, const Tensor<B>& targets, Optimization<B>& opt) {
    const auto memory = opt.step_scope();
    typename MlpFeatures<B>::Context cf;
    typename Linear<B>::Context cl;
    zero_grad(*this);
    const Tensor<B> lg = head.forward(features.forward(x, cf), cl);
    Tensor<B> d;
    const double loss = softmax_cross_entropy(lg, targets, d);
    features.backward(cf, head.backward(cl, d), GradMode::params_only);  // x is data: no dx
    opt.step(*this, loss);
    return loss;
  }
  /// Arg-max class of every row.
  std::vector<int> predict(const Tensor<B>& x) const {
    const HostMatrix<T> l = to_host(logits(x));
    std::vector<int> out(std::size_t(l.rows()));
    for (long r = 0; r < l.rows(); ++r) {
      long best = 0;
      for (long c = 1; c < l.cols(); ++c)
        if (l(r, c) > l(r, best)) best = c;
      out[std::size_t(r)] = int(best);
    }
    return out;
  }
  /// Share of rows whose predicted class equals labels[r].
  double accuracy(const Tensor<B>& x, const std::vector<int>& labels) const {
    if (long(labels.size()) != x.rows())
      throw shape_error(detail::cat("MlpClassifier.accuracy: ", labels.size(), " labels for ", x.rows(), " rows"));
    const std::vector<int> p = predict(x);
    long ok = 0;
    for (std::size_t i = 0; i < p.size(); ++i) ok += p[i] == labels[i];
    return p.empty() ? 0.0 : double(ok) / double(p.size());
  }
  /// Parameters "features.{0,2,…}", "head".
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    features.visit_parameters(v, join_name(prefix, "features"));
    head.visit_parameters(v, join_name(prefix, "head"));
  }
  MlpFeatures<B> features;
  Linear<B> head;
};

}  // namespace biflow
