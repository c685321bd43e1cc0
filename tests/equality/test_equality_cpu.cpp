// The backend equality cases with Cpu<float> as the backend under test (reference: Cpu<double>). This is the CPU
// side of the Cpu-vs-Cuda equality tests: it runs everywhere, so the cases, their inputs and their float
// tolerances are exercised on every machine; tests/cuda/equality_part1..4.cu run the same cases on Cuda<float>.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#define BIFLOW_EQ_BACKEND biflow::Cpu<float>
#include "equality_cases.hpp"
