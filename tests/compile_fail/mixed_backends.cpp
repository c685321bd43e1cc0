// EXPECT: all layers must use the same backend
#include <biflow/biflow.hpp>
biflow::Sequential<biflow::Permutation<biflow::Cpu<float>>, biflow::Permutation<biflow::Cpu<double>>> s;
int main() {}
