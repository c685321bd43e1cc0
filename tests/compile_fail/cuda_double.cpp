// EXPECT: only float is supported on the GPU
#include <biflow/biflow.hpp>
biflow::Cuda<double>::scalar x = 0;
int main() {}
