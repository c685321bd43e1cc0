// EXPECT: nn module: missing `Tensor<B> forward(const Tensor<B>& x) const` (the inference pass
#include <biflow/flow/coupling.hpp>
using B = biflow::Cpu<float>;
// A 0.2-style conditioner: training forward and backward, but no inference pass.
struct OldNet {
  using backend = B;
  struct Context {};
  biflow::Tensor<B> forward(const biflow::Tensor<B>& x, Context&) const { return x; }
  biflow::Tensor<B> backward(const Context&, const biflow::Tensor<B>& dy, biflow::GradMode = biflow::GradMode::all) {
    return dy;
  }
  long in_features() const { return 2; }
  long out_features() const { return 4; }
  template <class V>
  void visit_parameters(V&&, const std::string&) {}
};
biflow::AffineCoupling<B, OldNet> c;
int main() {}
