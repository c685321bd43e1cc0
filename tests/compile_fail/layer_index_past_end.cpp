// EXPECT: index I is past the last layer
#include <biflow/flow/permutation.hpp>
#include <biflow/flow/sequential.hpp>
using B = biflow::Cpu<float>;
int main() {
  biflow::Sequential<biflow::Permutation<B>> s(biflow::Permutation<B>::reverse(2));
  auto& l = biflow::layer<1>(s);
  (void)l;
}
