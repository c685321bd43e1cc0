// EXPECT: only float is supported on the GPU
#include <biflow/backend/tags.hpp>
biflow::Cuda<double>::scalar x = 0;
int main() {}
