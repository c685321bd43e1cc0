// Cuda<float> against the reference Cpu<double>: the backend equality cases of tests/equality (every primitive,
// nn module, flow layer, reverse block, distance, optimiser step and full training step), plus what exists only on
// the GPU (contexts, the TF32 math mode, memory-pool accounting). Exits 77 ("skipped: no CUDA device") without a
// GPU, which CTest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#define BIFLOW_EQ_BACKEND biflow::Cuda<float>
#include "../equality/equality_cases.hpp"

#include <cstdio>

using namespace biflow;
using G = Cuda<float>;

TEST_CASE("cuda: a user-owned context runs work on its own stream and gives the same results") {
  const eq::Pair a = eq::randn(64, 32, 1), b = eq::randn(32, 48, 2);
  const HostMatrix<double> want = eq::host(matmul(a.b, false, b.b, false));
  gpu::Context mine;
  CHECK(&gpu::context() != &mine);
  gpu::context().synchronize();  // a and b were written on the default stream
  {
    gpu::ScopedContext use(mine);
    CHECK(&gpu::context() == &mine);
    CHECK(gpu::context().stream() == mine.stream());
    const Tensor<G> c = matmul(a.b, false, b.b, false);
    CHECK(eq::max_rel(want, eq::host(c)) == 0.0);
  }
  CHECK(&gpu::context() != &mine);
}

TEST_CASE("cuda: TF32 is opt-in, close to fp32, and restored when its scope ends") {
  CHECK(gpu::context().math() == gpu::MathMode::fp32);
  const eq::Pair a = eq::randn(256, 256, 3), b = eq::randn(256, 256, 4);
  const HostMatrix<double> ref = eq::host(matmul(a.r, false, b.r, false));
  const HostMatrix<double> fp32 = eq::host(matmul(a.b, false, b.b, false));
  HostMatrix<double> tf32;
  {
    gpu::MathScope scope(gpu::MathMode::tf32);
    CHECK(gpu::context().math() == gpu::MathMode::tf32);
    tf32 = eq::host(matmul(a.b, false, b.b, false));
  }
  CHECK(gpu::context().math() == gpu::MathMode::fp32);
  const double e32 = (fp32 - ref).cwiseAbs().maxCoeff() / ref.cwiseAbs().maxCoeff();
  const double etf = (tf32 - ref).cwiseAbs().maxCoeff() / ref.cwiseAbs().maxCoeff();
  MESSAGE("max error relative to max |C|: fp32 " << e32 << ", tf32 " << etf);
  CHECK(e32 < 1e-5);
  CHECK(etf < 1e-2);  // 10-bit mantissa inputs, K = 256
}

TEST_CASE("cuda: the memory pool reports tensors' bytes and the peak") {
  gpu::context().synchronize();
  gpu::reset_pool_peak();
  const std::size_t before = gpu::pool_usage().used;
  {
    Tensor<G> big(1024, 1024);
    gpu::context().synchronize();
    CHECK(gpu::pool_usage().used >= before + big.bytes());
  }
  gpu::context().synchronize();
  CHECK(gpu::pool_usage().peak >= before + 1024 * 1024 * sizeof(float));
}

TEST_CASE("cuda: MLE and reverse training steps move no tensor between host and device, only the returned scalars") {
  Rng r(1);
  TarFlow<G> f(eq::small_tarflow(3), r);
  eq::randomize(f, 2, 0.1);
  TrainOptions o;
  o.verbose = false;
  MleTrainer<TarFlow<G>> t(f, o);
  const eq::Pair x = eq::randn(6, 16, 3), c = eq::from_labels({0, 1, 2, 3, 0, 1}, 4);
  t.step(x.b, c.b);  // warm-up
  auto& tr = gpu::context().transfers();
  tr = {};
  t.step(x.b, c.b);
  CHECK(tr.uploads == 0);
  CHECK(tr.downloads == 0);
  CHECK(tr.scalar_reads == 2);  // the loss and the global gradient norm
  const ReverseConfig rc = eq::small_reverse(false);
  Rng r2(4);
  ReverseModel<G> g(rc, r2);
  HiddenAlignment<G> h(rc, r2);
  ReverseTrainOptions ro;
  ro.noise = 0.05;
  ro.guidance_max = 2.0;
  ro.optim.verbose = false;
  ReverseTrainer<TarFlow<G>, ReverseModel<G>, HiddenAlignment<G>> rt(f, g, h, ro);
  Rng s(5);
  rt.step(x.b, c.b, s);
  tr = {};
  const ReverseStepResult res = rt.step(x.b, c.b, s);
  CHECK(tr.uploads == 0);
  CHECK(tr.downloads == 0);
  CHECK(tr.scalar_reads == long(2 + res.hidden_terms.size()));  // output loss, each hidden term, gradient norm
}

int main(int argc, char** argv) try {
  const int n = gpu::device_count();  // throws (test fails) on a broken GPU
  if (n == 0) return gpu::no_device_exit("biflow_cuda_tests");
  cudaDeviceProp p{};
  gpu::check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  std::printf("CUDA devices: %d (device 0: %s, sm_%d%d)\n", n, p.name, p.major, p.minor);
  doctest::Context ctx(argc, argv);
  return ctx.run();
} catch (const std::exception& e) {
  std::fprintf(stderr, "biflow_cuda_tests: %s\n", e.what());
  return 1;
}
