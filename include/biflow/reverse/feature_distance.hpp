#pragma once
// Feature (perceptual) distance: compare pred and target in the feature space of a frozen network the user
// supplies (any nn Module on data rows, e.g. a trained classifier's trunk), with an inner distance there.
// The paper's largest single quality gain came from such distances (LPIPS / ConvNeXt features); on the
// digits biflow uses the evaluation classifier's penultimate features.
#include <string>

#include "../nn/module.hpp"
#include "distance.hpp"

namespace biflow {

/// D(a, b) = Inner(Net(a), Net(b)). Net is held by pointer and must outlive the distance. Net is frozen: the
/// gradient flows through it to `a` by an input-only backward (no weight gradients, Net untouched), and the
/// target's features come from the inference pass.
template <class Net, class Inner = Mse>
struct Feature {
  static_assert(Module<Net>, "Feature<Net, Inner>: Net must be an nn Module (forward/backward with a Context) "
                             "mapping data rows to feature rows");
  const Net* net = nullptr;
  Inner inner{};
  std::string name() const { return "feature(" + inner.name() + ")"; }
  template <Backend B>
  Tensor<B> per_row(const Tensor<B>& a, const Tensor<B>& b) const {
    check(a, b);
    return inner.per_row(net->forward(a), net->forward(b));
  }
  template <Backend B>
  Tensor<B> grad(const Tensor<B>& a, const Tensor<B>& b, const Tensor<B>& w) const {
    check(a, b);
    typename Net::Context ca;
    const Tensor<B> fa = net->forward(a, ca), fb = net->forward(b);
    return backward_input(*net, ca, inner.grad(fa, fb, w));
  }

 private:
  template <class B>
  void check(const Tensor<B>& a, const Tensor<B>& b) const {
    if (!net) throw usage_error("Feature distance: no network set (Feature{&net})");
    detail::check_distance_args("Feature distance", a, b);
    require_cols("Feature distance: input", a, net->in_features());
  }
};

}  // namespace biflow
