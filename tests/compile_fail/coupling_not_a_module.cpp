// EXPECT: nn module: missing `Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all)` returning dx
#include <biflow/flow/coupling.hpp>
using B = biflow::Cpu<float>;
struct HalfNet {  // forward only: not usable as a conditioner
  using backend = B;
  struct Context {};
  biflow::Tensor<B> forward(const biflow::Tensor<B>& x, Context&) const { return x; }
  biflow::Tensor<B> forward(const biflow::Tensor<B>& x) const { return x; }
  long in_features() const { return 2; }
  long out_features() const { return 4; }
};
biflow::AffineCoupling<B, HalfNet> c;
int main() {}
