// EXPECT: all layers must use the same backend
#include <biflow/flow/permutation.hpp>
#include <biflow/flow/sequential.hpp>
biflow::Sequential<biflow::Permutation<biflow::Cpu<float>>, biflow::Permutation<biflow::Cpu<double>>> s;
int main() {}
