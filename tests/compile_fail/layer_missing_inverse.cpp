// EXPECT: flow layer: missing `FlowOut<B> inverse(y, cond, policy) const`
#include <biflow/flow/permutation.hpp>
#include <biflow/flow/sequential.hpp>
using B = biflow::Cpu<float>;
// A user layer that forgot its inverse.
struct NoInverse {
  using backend = B;
  struct Context {};
  template <class P = biflow::logdet::Analytic>
  biflow::FlowOut<B> forward(const biflow::Tensor<B>& x, Context&, const biflow::Tensor<B>& = {}, P = {}) const {
    return {x, {}};
  }
  template <class P = biflow::logdet::Analytic>
  biflow::FlowOut<B> forward(const biflow::Tensor<B>& x, const biflow::Tensor<B>& = {}, P = {}) const {
    return {x, {}};
  }
  biflow::Tensor<B> backward(const Context&, const biflow::Tensor<B>& dy, const biflow::Tensor<B>&,
                             biflow::GradMode = biflow::GradMode::all) {
    return dy;
  }
  long features() const { return 2; }
  long cond_features() const { return 0; }
  template <class V>
  void visit_parameters(V&&, const std::string&) {}
};
biflow::Sequential<NoInverse, biflow::Permutation<B>> s;
int main() {}
