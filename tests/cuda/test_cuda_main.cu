// The CUDA test binary's main and what exists only on the GPU (contexts and the stream a tensor is freed on, the
// TF32 and bf16 math modes, the memory pool, grids larger than the launch cap, deterministic reductions, host
// traffic of a training step). The backend equality cases against Cpu<double> (every primitive, nn module, flow
// layer, reverse block, distance, optimiser step and full training step) are equality_part1..4.cu. Exits 77
// ("skipped: no CUDA device") without a GPU, which CTest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#define BIFLOW_EQ_BACKEND biflow::Cuda<float>
#define BIFLOW_EQ_PART 0  // the helpers only
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

TEST_CASE("cuda: bf16 is opt-in, within its tolerance of fp32, for plain and batched products") {
  const eq::Pair a = eq::randn(256, 256, 3), b = eq::randn(256, 256, 4);
  const HostMatrix<double> ref = eq::host(matmul(a.r, false, b.r, false));
  HostMatrix<double> bf;
  {
    gpu::MathScope scope(gpu::MathMode::bf16);
    bf = eq::host(matmul(a.b, false, b.b, false));
  }
  CHECK(gpu::context().math() == gpu::MathMode::fp32);
  const double e = (bf - ref).cwiseAbs().maxCoeff() / ref.cwiseAbs().maxCoeff();
  MESSAGE("bf16 max error relative to max |C|: " << e);
  CHECK(e > 0.0);   // the mode is really on
  CHECK(e < 3e-2);  // 8-bit mantissa operands, K = 256
  // Batched (attention-like strides: not one uniform stride, so the pointer-array call).
  const MatView va{0, 4, 64, 256, 8 * 256, 64}, vb{0, 4, 64, 256, 8 * 256, 64}, vc{0, 4, 4, 4, 4 * 16, 16};
  Tensor<G> cb(64, 16);
  Tensor<eq::R> cr(64, 16);
  {
    gpu::MathScope scope(gpu::MathMode::bf16);
    gemm_batched(a.b, va, false, b.b, vb, true, cb, vc, 16, 4, 1.0f, 0.0f);
  }
  gemm_batched(a.r, va, false, b.r, vb, true, cr, vc, 16, 4, 1.0, 0.0);
  const HostMatrix<double> hr = eq::host(cr);
  CHECK((eq::host(cb) - hr).cwiseAbs().maxCoeff() / hr.cwiseAbs().maxCoeff() < 3e-2);
}

TEST_CASE("cuda: a tensor is freed on the stream that allocated it, also after that context is gone") {
  Tensor<G> kept;
  cudaStream_t s = nullptr;
  {
    gpu::Context mine;
    gpu::ScopedContext use(mine);
    kept = Tensor<G>(512, 512);
    Tensor<G> copy = kept;  // copies allocate on the current context too
    CHECK(kept.stream() == mine.stream());
    CHECK(copy.stream() == mine.stream());
    s = mine.stream();
    fill(kept, 2.0f);
  }  // mine is destroyed (after synchronising); kept's stream lives until kept dies
  CHECK(kept.stream() == s);
  CHECK(kept.stream() != gpu::context().stream());
  CHECK(sum(kept) == doctest::Approx(2.0 * 512 * 512));
  Tensor<G> moved = std::move(kept);  // the stream travels with the buffer
  CHECK(moved.stream() == s);
  CHECK(kept.stream() == nullptr);
  CHECK(Tensor<G>().stream() == nullptr);
}

TEST_CASE("cuda: the memory pool keeps what it reserved (release threshold) instead of unmapping it each sync") {
  int dev = 0;
  gpu::check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaMemPool_t pool{};
  gpu::check(cudaDeviceGetDefaultMemPool(&pool, dev), "pool");
  std::uint64_t threshold = 0;
  gpu::check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "threshold");
  CHECK(threshold == ~std::uint64_t(0));
  { Tensor<G> big(4096, 4096); }
  gpu::context().synchronize();
  std::uint64_t reserved = 0;
  gpu::check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved), "reserved");
  CHECK(reserved >= 4096ull * 4096ull * sizeof(float));
}

TEST_CASE("cuda: warp-per-row kernels cover rows beyond the capped grid (batch x heads x T > 4.19M rows)") {
  const long rows = 65535L * 8 * 256 / 32 + 1000, cols = 3;  // more rows than the capped grid has warps
  HostMatrix<float> h(rows, cols);
  for (long r = 0; r < rows; ++r)
    for (long c = 0; c < cols; ++c) h(r, c) = float((r % 7) + c);
  Tensor<G> x = from_host<G>(h);
  const HostMatrix<float> rs = to_host(row_sum(x));
  Tensor<G> p = x;
  softmax_rows(p, false);
  const HostMatrix<float> ph = to_host(p);
  Tensor<G> y, mean, rstd;
  const Tensor<G> g = from_host<G>(HostMatrix<float>::Ones(1, cols)), b(1, cols);
  layernorm_forward(x, g, b, 1e-5f, y, mean, rstd);
  const HostMatrix<float> yh = to_host(y);
  for (long r : {0L, rows / 2, rows - 1000, rows - 1}) {
    const float base = float(r % 7);
    CHECK(rs(r, 0) == doctest::Approx(3 * base + 3));
    const double z = 1 + std::exp(1.0) + std::exp(2.0);
    CHECK(ph(r, 2) == doctest::Approx(std::exp(2.0) / z));
    CHECK(yh(r, 0) == doctest::Approx(-std::sqrt(1.5)).epsilon(1e-3));  // (0 - 1) / sqrt(2/3)
  }
}

TEST_CASE("cuda: reductions and parameter gradients are deterministic (fixed-order, no atomics)") {
  const eq::Pair x = eq::randn(4096, 768, 11), dy = eq::randn(4096, 768, 12);
  CHECK(sum(x.b) == sum(x.b));
  CHECK(sum_sq(x.b) == sum_sq(x.b));
  Tensor<G> c1, c2;
  col_sum(x.b, c1);
  col_sum(x.b, c2);
  CHECK(eq::max_rel(eq::host(c1), eq::host(c2)) == 0.0);
  const Tensor<G> g = from_host<G>(HostMatrix<float>::Ones(1, 768)), b(1, 768);
  Tensor<G> y, mean, rstd;
  layernorm_forward(x.b, g, b, 1e-5f, y, mean, rstd);
  Tensor<G> dg1(1, 768), db1(1, 768), dg2(1, 768), db2(1, 768);
  layernorm_backward(x.b, g, mean, rstd, dy.b, dg1, db1);
  layernorm_backward(x.b, g, mean, rstd, dy.b, dg2, db2);
  CHECK(eq::max_rel(eq::host(dg1), eq::host(dg2)) == 0.0);
  CHECK(eq::max_rel(eq::host(db1), eq::host(db2)) == 0.0);
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
