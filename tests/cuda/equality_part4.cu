// Part 4 of the backend equality cases on Cuda<float> (tests/equality/equality_cases.hpp): the cases are split
// into four translation units so that the CUDA test binary builds in parallel.
#define BIFLOW_EQ_BACKEND biflow::Cuda<float>
#define BIFLOW_EQ_PART 4
#include "../equality/equality_cases.hpp"
