// EXPECT: N must be at least 1
#include <biflow/biflow.hpp>
using B = biflow::Cpu<float>;
biflow::Repeat<0, biflow::Permutation<B>> r;
int main() {}
