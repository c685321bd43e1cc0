// Google Benchmark on a CUDA device (prints "skipped: no CUDA device" and exits 0 elsewhere).
// <math>: 0 fp32, 1 TF32, 2 bf16 operands (fp32 accumulation); 1000 classes like the PyTorch reference run.
//   BM_Gemm/<n>/<math>: square cuBLAS GEMM, counter TFLOP/s — the cuBLAS peak the other figures are read against
//   BM_GemmB2/<math>: the MLP GEMM of a B/2 training step ((batch·T) x 768 x 3072, batch 64, T 256)
//   BM_ColSum/<rows>/<cols>: the bias gradient (a GEMV against ones), counter GB/s
//   BM_TrainStep/<width>/<blocks>/<layers>/<batch>/<math>: a whole MleTrainer step of a class-conditional latent
//       TARFlow (4 x 32 x 32, patch 2, T = 256); counters tokens/s and TFLOP/s (model GEMM FLOPs / time)
//   BM_SampleExact/<width>/<blocks>/<layers>/<batch>/<guided>: exact inverse (KV-cached decoding, guidance 2 on
//       a doubled batch when guided) + score denoising
//   BM_SampleLearned/<width>/<stages>/<layers>/<batch>/<guided>: G's one pass (hidden-alignment model with a
//       denoise stage; guided: training-time CFG, the scale an input)
// The PyTorch comparison is benchmarks/reference/latent_tarflow_torch.py; scripts/gpu_check.sh runs both.
#include <benchmark/benchmark.h>

#include <biflow/biflow.hpp>
#include <cstdio>

using namespace biflow;
using G = Cuda<float>;

namespace {
TarFlowConfig latent_cfg(long width, long blocks, long layers) {
  TarFlowConfig c;
  c.image = {4, 32, 32, 2, PatchOrder::channel_major};
  c.width = width;
  c.blocks = blocks;
  c.layers = layers;
  c.heads = width / 64;
  c.num_classes = 1000;
  return c;
}
gpu::MathMode math(long m) { return m == 2 ? gpu::MathMode::bf16 : m == 1 ? gpu::MathMode::tf32 : gpu::MathMode::fp32; }
Tensor<G> randn(long n, long d, std::uint64_t seed) {
  Rng r(seed);
  Tensor<G> x(n, d);
  fill_normal(x, r);
  return x;
}
Tensor<G> labels(long n, long classes) {
  std::vector<int> l(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) l[std::size_t(i)] = int(i % classes);
  return from_host<G>(data::one_hot<float>(l, classes + 1));
}
/// Forward + backward GEMM FLOPs of one TARFlow training step (3x the forward's 2·m·n·k; attention scores included).
double step_flops(const TarFlowConfig& c, long batch) {
  const double M = double(batch) * double(c.image.tokens()), W = double(c.width), T = double(c.image.tokens());
  const double D = double(c.image.token_dim());
  const double per_layer = 2 * M * W * (3 * W + W + 8 * W) + 2 * 2 * double(batch) * T * T * W;
  const double per_block = double(c.layers) * per_layer + 2 * M * D * W + 2 * M * W * 2 * D;
  return 3 * double(c.blocks) * per_block;
}

void BM_Gemm(benchmark::State& st) {
  const long n = st.range(0);
  gpu::MathScope m(math(st.range(1)));
  const Tensor<G> a = randn(n, n, 1), b = randn(n, n, 2);
  Tensor<G> c(n, n);
  for (auto _ : st) {
    gemm(a, false, b, false, c);
    gpu::context().synchronize();
  }
  st.counters["TFLOP/s"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n) * 1e-12 * double(st.iterations()),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Gemm)->ArgsProduct({{4096, 8192}, {0, 1, 2}})->UseRealTime();

void BM_GemmB2(benchmark::State& st) {
  gpu::MathScope m(math(st.range(0)));
  const long M = 64 * 256, W = 768;
  const Tensor<G> x = randn(M, W, 1), w = randn(4 * W, W, 2);
  Tensor<G> y(M, 4 * W);
  for (auto _ : st) {
    gemm(x, false, w, true, y);
    gpu::context().synchronize();
  }
  st.counters["TFLOP/s"] = benchmark::Counter(2.0 * double(M) * double(W) * 4 * double(W) * 1e-12 *
                                                   double(st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GemmB2)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

void BM_ColSum(benchmark::State& st) {
  const Tensor<G> x = randn(st.range(0), st.range(1), 1);
  Tensor<G> out(1, st.range(1));
  for (auto _ : st) {
    col_sum(x, out, 1.0f);
    gpu::context().synchronize();
  }
  st.counters["GB/s"] = benchmark::Counter(double(x.bytes()) * 1e-9 * double(st.iterations()),
                                           benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ColSum)->Args({16384, 768})->Args({16384, 3072})->UseRealTime();

void BM_TrainStep(benchmark::State& st) {
  const TarFlowConfig cfg = latent_cfg(st.range(0), st.range(1), st.range(2));
  const long batch = st.range(3);
  gpu::MathScope m(math(st.range(4)));
  Rng r(1);
  TarFlow<G> f(cfg, r);
  TrainOptions o;
  o.verbose = false;
  MleTrainer<TarFlow<G>> t(f, o);
  const Tensor<G> x = randn(batch, cfg.image.features(), 3), c = labels(batch, cfg.num_classes);
  t.step(x, c);  // warm-up: allocations, optimiser state
  gpu::reset_pool_peak();
  for (auto _ : st) benchmark::DoNotOptimize(t.step(x, c).loss);  // the returned loss synchronises
  st.counters["tokens/s"] = benchmark::Counter(double(batch * cfg.image.tokens() * st.iterations()),
                                               benchmark::Counter::kIsRate);
  st.counters["TFLOP/s"] = benchmark::Counter(step_flops(cfg, batch) * 1e-12 * double(st.iterations()),
                                              benchmark::Counter::kIsRate);
  st.counters["peak_MiB"] = double(gpu::pool_usage().peak) / 1048576.0;
  st.counters["params_M"] = double(parameter_count(f)) / 1e6;
}
BENCHMARK(BM_TrainStep)->Args({768, 8, 2, 64, 0})->Args({768, 8, 2, 64, 1})->Args({768, 8, 2, 64, 2})
    ->Args({256, 4, 2, 64, 0})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SampleExact(benchmark::State& st) {
  const TarFlowConfig cfg = latent_cfg(st.range(0), st.range(1), st.range(2));
  const long batch = st.range(3);
  Rng r(1);
  TarFlow<G> f(cfg, r);
  const Tensor<G> z = randn(batch, cfg.image.features(), 4), c = labels(batch, cfg.num_classes);
  const bool guided = st.range(4) != 0;
  for (auto _ : st) {
    const Tensor<G> y = guided ? f.inverse(z, c, Guidance<G>{2.0}, logdet::none).y : f.inverse(z, c, logdet::none).y;
    const Tensor<G> x = denoise(f, y, 0.05, c);
    gpu::context().synchronize();
  }
  st.counters["images/s"] = benchmark::Counter(double(batch * st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SampleExact)->ArgsProduct({{768}, {8}, {2}, {1, 64}, {0, 1}})->Unit(benchmark::kMillisecond)
    ->UseRealTime()->Iterations(1);

void BM_SampleLearned(benchmark::State& st) {
  const TarFlowConfig cfg = latent_cfg(st.range(0), 8, 2);
  ReverseConfig rc;
  rc.tokens = cfg.image.tokens();
  rc.token_dim = cfg.image.token_dim();
  rc.width = st.range(0);
  rc.stages = st.range(1);
  rc.layers = st.range(2);
  rc.heads = rc.width / 64;
  rc.cond_features = cfg.cond_features();
  rc.denoise_stage = true;
  rc.guidance = st.range(4) != 0;
  const long batch = st.range(3);
  Rng r(1);
  TarFlow<G> f(cfg, r);
  ReverseModel<G> g(rc, r);
  const BiFlow bf{f, g};
  const Tensor<G> z = randn(batch, cfg.image.features(), 4), c = labels(batch, cfg.num_classes);
  Tensor<G> w;
  if (rc.guidance) {
    w = Tensor<G>(batch, 1);
    fill(w, 2.0f);
  }
  for (auto _ : st) {
    const Tensor<G> x = bf.generate(z, c, w);
    gpu::context().synchronize();
  }
  st.counters["images/s"] = benchmark::Counter(double(batch * st.iterations()), benchmark::Counter::kIsRate);
  st.counters["params_M"] = double(parameter_count(g)) / 1e6;
}
BENCHMARK(BM_SampleLearned)->ArgsProduct({{768}, {4}, {3}, {1, 64}, {0, 1}})->Unit(benchmark::kMillisecond)
    ->UseRealTime();
}  // namespace

int main(int argc, char** argv) {
  if (gpu::device_count() == 0) return gpu::no_device_exit("bench_cuda") == 77 ? 0 : 1;
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
