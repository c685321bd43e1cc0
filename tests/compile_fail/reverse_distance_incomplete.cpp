// A distance policy needs per_row, grad and name.
// EXPECT: distance policy: needs
#include <biflow/reverse/distance.hpp>

struct OnlyValue {
  template <class B>
  biflow::Tensor<B> per_row(const biflow::Tensor<B>& a, const biflow::Tensor<B>&) const { return a; }
};

int main() {
  using B = biflow::Cpu<float>;
  biflow::Tensor<B> a(2, 2), g;
  biflow::distance_loss(OnlyValue{}, a, a, 1.0, g);
}
