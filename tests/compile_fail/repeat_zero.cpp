// EXPECT: N must be at least 1
#include <biflow/flow/permutation.hpp>
#include <biflow/flow/sequential.hpp>
using B = biflow::Cpu<float>;
biflow::Repeat<0, biflow::Permutation<B>> r;
int main() {}
