// EXPECT: no layer of this flow takes this option type
// Guidance handed to a flow without TARFlow blocks would be silently ignored; it is rejected instead.
#include <biflow/flow/permutation.hpp>
#include <biflow/flow/sequential.hpp>
#include <biflow/flow/tarflow_block.hpp>
using B = biflow::Cpu<float>;
int main() {
  biflow::Sequential<biflow::Permutation<B>> flow(biflow::Permutation<B>::reverse(4));
  biflow::Tensor<B> z(2, 4);
  flow.inverse(z, {}, biflow::Guidance<B>{1.0, false, {}});
}
