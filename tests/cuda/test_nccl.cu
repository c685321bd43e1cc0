// dist/nccl.cuh on a GPU: the NCCL communicator bootstrapped through a host communicator (here SingleProcess: one
// rank on one GPU — NCCL does not put two ranks on one device, so the 2-rank semantics are tested over MPI on CPU
// ranks in tests/mpi): device tensors pass straight through, host arrays are staged, a data-parallel MleTrainer on
// Cuda<float> takes exactly the steps of a plain one. Exits 77 ("skipped: no CUDA device") without a GPU; with
// BIFLOW_REQUIRE_GPU=1 that is a failure.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <biflow/biflow.hpp>
#include <biflow/dist/nccl.cuh>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
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

TEST_CASE("nccl: the unique-id file bootstraps one rank and is removed; started all-reduces on the communicator's "
          "stream finish with the blocking one's values; an overlapped data-parallel trainer takes the plain steps") {
  const std::string file = "/tmp/biflow_nccl_test_" + std::to_string(::getpid()) + ".id";
  dist::NcclCommunicator nccl(file, dist::LaunchInfo{}, {.timeout_seconds = 60});  // rank 0 of 1
  CHECK(nccl.size() == 1);
  CHECK_FALSE(std::filesystem::exists(file));  // rank 0 removes it once every rank has joined
  HostMatrix<float> h(100, 3);
  for (long i = 0; i < h.size(); ++i) h.data()[i] = float(i % 17) - 8.0f;
  Tensor<G> t = from_host<G>(h);
  nccl.start_all_reduce(t.data(), 150, dist::Reduce::mean);
  nccl.start_all_reduce(t.data() + 150, 150, dist::Reduce::sum);
  nccl.finish_all_reduces();
  CHECK(to_host(t) == h);

  auto make = [] {
    Rng r(4);
    return Sequential<AffineCoupling<G, MLP<G>>, AffineCoupling<G, MLP<G>>, AffineCoupling<G, MLP<G>>>(
        make_coupling<G>(masks::half(4, 0), {32}, r), make_coupling<G>(masks::half(4, 1), {32}, r),
        make_coupling<G>(masks::half(4, 0), {32}, r));
  };
  auto a = make(), b = make();
  TrainOptions o;
  o.total_steps = 10;
  o.warmup = 2;
  MleTrainer ta(a, o), tb(b, o);
  const auto stats = dist::make_data_parallel(tb, b, nccl, {.overlap = true, .bucket_mb = 0.002});
  Rng dr(9);
  for (int s = 0; s < 10; ++s) {
    const Tensor<G> x = StandardNormal::sample<G>(64, 4, dr);
    CHECK(ta.step(x).loss == tb.step(x).loss);
  }
  CHECK(stats->early_buckets > 0);  // buckets started during the backward
  const Tensor<G> x = StandardNormal::sample<G>(16, 4, dr);
  CHECK(to_host(a.forward(x).y) == to_host(b.forward(x).y));
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
