// dist/nccl.cuh on a GPU: the NCCL communicator bootstrapped through a host communicator (here SingleProcess: one
// rank on one GPU — NCCL does not put two ranks on one device, so the 2-rank semantics are tested over MPI on CPU
// ranks in tests/mpi): device tensors pass straight through, host arrays are staged, a data-parallel MleTrainer on
// Cuda<float> takes exactly the steps of a plain one. Exits 77 ("skipped: no CUDA device") without a GPU; with
// BIFLOW_REQUIRE_GPU=1 that is a failure.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <biflow/biflow.hpp>
#include <biflow/dist/nccl.cuh>
#include <cstdio>
#include <vector>

using namespace biflow;
using G = Cuda<float>;

TEST_CASE("nccl: one rank: device tensors and host arrays come back unchanged from sum, mean and broadcast") {
  dist::SingleProcess host;
  dist::NcclCommunicator nccl(host, {.timeout_seconds = 60});
  CHECK(nccl.rank() == 0);
  CHECK(nccl.size() == 1);
  static_assert(dist::Communicator<dist::NcclCommunicator> && dist::NcclCommunicator::device_pointers);
  HostMatrix<float> h(33, 7);
  for (long i = 0; i < h.size(); ++i) h.data()[i] = float(i) * 0.25f - 3.0f;
  Tensor<G> t = from_host<G>(h);
  nccl.all_reduce(t.data(), long(t.size()), dist::Reduce::sum);  // device pointer, straight to NCCL
  CHECK(to_host(t) == h);
  dist::all_reduce(nccl, t, dist::Reduce::mean);
  CHECK(to_host(t) == h);
  dist::broadcast(nccl, t, 0);
  CHECK(to_host(t) == h);
  std::vector<double> v{1.5, -2.0, 3.25};  // host memory: staged through the scratch buffer
  nccl.all_reduce(v.data(), 3, dist::Reduce::sum);
  CHECK(v == std::vector<double>{1.5, -2.0, 3.25});
  nccl.broadcast(v.data(), 3, 0);
  CHECK(v == std::vector<double>{1.5, -2.0, 3.25});
  nccl.barrier();
  CHECK_THROWS_AS(nccl.broadcast(v.data(), 3, 1), usage_error);
}

TEST_CASE("nccl: a data-parallel MleTrainer on Cuda<float> with one NCCL rank takes exactly the plain trainer's steps") {
  dist::SingleProcess host;
  dist::NcclCommunicator nccl(host);
  auto make = [] {
    Rng r(4);
    return Sequential<AffineCoupling<G, MLP<G>>, AffineCoupling<G, MLP<G>>>(
        make_coupling<G>(masks::half(4, 0), {32}, r), make_coupling<G>(masks::half(4, 1), {32}, r));
  };
  auto a = make(), b = make();
  TrainOptions o;
  o.total_steps = 10;
  o.warmup = 2;
  MleTrainer ta(a, o), tb(b, o);
  dist::make_data_parallel(tb, b, nccl);
  Rng dr(9);
  for (int s = 0; s < 10; ++s) {
    const Tensor<G> x = StandardNormal::sample<G>(64, 4, dr);
    const double la = ta.step(x).loss, lb = tb.step(x).loss;
    CHECK(la == lb);
  }
  const Tensor<G> x = StandardNormal::sample<G>(16, 4, dr);
  CHECK(to_host(a.forward(x).y) == to_host(b.forward(x).y));
  CHECK(dist::parameter_divergence(b, nccl) == 0.0);
}

int main(int argc, char** argv) try {
  const int n = gpu::device_count();
  if (n == 0) return gpu::no_device_exit("biflow_nccl_tests");
  int version = 0;
  ncclGetVersion(&version);
  std::printf("CUDA devices: %d; NCCL %d\n", n, version);
  doctest::Context ctx(argc, argv);
  return ctx.run();
} catch (const std::exception& e) {
  std::fprintf(stderr, "biflow_nccl_tests: %s\n", e.what());
  return 1;
}
