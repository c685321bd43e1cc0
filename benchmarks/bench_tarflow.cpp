// Google Benchmark: TARFlow on Cpu<float>, one thread.
//   BM_TarTrainStep/<batch>/<blocks>/<layers>: a whole MleTrainer step of a digits model (width 64, T = 16 tokens
//       of 4): the figure compared with benchmarks/reference/tarflow_torch.py; counters: tokens/s, images/s
//   BM_TarSample/<T>/<batch>: exact inverse (KV-cached decoding) of a 2-block x 2-layer, width-64 model on
//       1 x (2·sqrt(T)) x (2·sqrt(T)) images, patch 2; counter images/s (and the uncached reference at T = 16)
//   BM_TarDenoise/<batch>: score-based denoising (one forward + backward through the input) of the digits model
//   BM_OptimizerStep/<flat>/<blocks>/<layers>: the optimiser part of a training step alone (clip the global
//       gradient norm, AdamW, EMA) on the digits model's parameters: per parameter tensor (0) or over the flat
//       buffers (1, what Optimization does); counter params/s
//   BM_AttentionShare/<batch>: forward+backward of the attention cores alone (scores, softmax, weighted sum) vs
//       the GEMMs of the same transformer layer, to show where a step's time goes
#include <benchmark/benchmark.h>

#include <biflow/biflow.hpp>
#include <cmath>

// Every run names the Cpu GEMM engine it measured (BIFLOW_CPU_BLAS; docs/performance.md).
static const bool biflow_engine_context = (benchmark::AddCustomContext("gemm_engine", biflow::cpu::gemm_engine()), true);

using namespace biflow;
using F = Cpu<float>;

namespace {
TarFlow<F> digits_model(long blocks = 4, long layers = 2, long side = 8) {
  TarFlowConfig cfg;
  cfg.image = {1, side, side, 2, PatchOrder::channel_major};
  cfg.width = 64;
  cfg.blocks = blocks;
  cfg.layers = layers;
  cfg.heads = 4;
  cfg.num_classes = 10;
  Rng r(1);
  TarFlow<F> m(cfg, r);
  Rng q(2);  // non-zero output projections, as after training
  m.visit_parameters([&](const std::string&, auto& p) {
    if (p.value.rows() > 1) fill_normal(p.value, q, 0.0f, 0.05f);
  }, "");
  return m;
}
Tensor<F> cond_rows(long n) {
  std::vector<int> l(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) l[std::size_t(i)] = int(i % 10);
  return from_host<F>(data::one_hot<float>(l, 11));
}
Tensor<F> randn(long n, long d, std::uint64_t seed) {
  Rng r(seed);
  Tensor<F> x(n, d);
  fill_normal(x, r);
  return x;
}

void BM_TarTrainStep(benchmark::State& st) {
  const long n = st.range(0);
  cpu::keep_heap_pages();
  TarFlow<F> m = digits_model(st.range(1), st.range(2));
  TrainOptions o;
  o.verbose = false;
  o.ema_decay = 0.999;
  MleTrainer<TarFlow<F>> tr(m, o);
  const Tensor<F> x = randn(n, 64, 3), c = cond_rows(n);
  for (auto _ : st) benchmark::DoNotOptimize(tr.step(x, c).loss);
  st.counters["tokens/s"] = benchmark::Counter(double(n * 16), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["images/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TarTrainStep)
    ->ArgsProduct({{64, 128, 256}, {4}, {2}})
    ->Args({128, 8, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_TarSample(benchmark::State& st) {
  const long T = st.range(0), n = st.range(1), side = 2 * long(std::lround(std::sqrt(double(T))));
  const TarFlow<F> m = digits_model(2, 2, side);
  const Tensor<F> z = randn(n, side * side, 4), c = cond_rows(n);
  for (auto _ : st) benchmark::DoNotOptimize(m.inverse(z, c).y.data());
  st.counters["images/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TarSample)
    ->ArgsProduct({{16, 64, 256}, {1, 16, 100}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_TarSampleUncached(benchmark::State& st) {
  const long n = st.range(0);
  const TarFlow<F> m = digits_model(2, 2, 8);
  const Tensor<F> z = randn(n, 64, 4), c = cond_rows(n);
  for (auto _ : st) benchmark::DoNotOptimize(m.inverse_uncached(z, c).y.data());
  st.counters["images/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TarSampleUncached)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_TarDenoise(benchmark::State& st) {
  const long n = st.range(0);
  TarFlow<F> m = digits_model();
  const Tensor<F> x = randn(n, 64, 5), c = cond_rows(n);
  for (auto _ : st) benchmark::DoNotOptimize(denoise(m, x, 0.05, c).data());
  st.counters["images/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TarDenoise)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();

/// arg 0: attention core only (batched GEMMs + softmax, forward and backward); arg 1: the whole layer.
void BM_AttentionShare(benchmark::State& st) {
  const long n = st.range(0), T = 16, W = 64;
  Rng r(6);
  TransformerLayer<F> layer(W, 4, T, true, r);
  const Tensor<F> x = randn(n * T, W, 7), dy = randn(n * T, W, 8);
  const Tensor<F> packed = randn(n * T, 3 * W, 9);
  const MatView q{0, T, 16, 3 * W, T * 3 * W, 16}, k{W, T, 16, 3 * W, T * 3 * W, 16},
      v{2 * W, T, 16, 3 * W, T * 3 * W, 16}, o{0, T, 16, W, T * W, 16}, s{0, T, T, T, 4 * T * T, T * T};
  for (auto _ : st) {
    if (st.range(1) == 0) {
      Tensor<F> p(n * 4 * T, T, uninit), out(n * T, W, uninit), dp(n * 4 * T, T, uninit),
          dpk(n * T, 3 * W, uninit);
      gemm_batched(packed, q, false, packed, k, true, p, s, n, 4, 0.25f, 0.0f);
      softmax_rows(p, true);
      gemm_batched(p, s, false, packed, v, false, out, o, n, 4, 1.0f, 0.0f);
      gemm_batched(dy, o, false, packed, v, true, dp, s, n, 4, 1.0f, 0.0f);
      gemm_batched(p, s, true, dy, o, false, dpk, v, n, 4, 1.0f, 0.0f);
      softmax_rows_backward(p, dp);
      gemm_batched(dp, s, false, packed, k, false, dpk, q, n, 4, 0.25f, 0.0f);
      gemm_batched(dp, s, true, packed, q, false, dpk, k, n, 4, 0.25f, 0.0f);
      benchmark::DoNotOptimize(dpk.data());
    } else {
      typename TransformerLayer<F>::Context ctx;
      benchmark::DoNotOptimize(layer.forward(x, ctx).data());
      benchmark::DoNotOptimize(layer.backward(ctx, dy).data());
    }
  }
}
void BM_OptimizerStep(benchmark::State& st) {
  const bool flat = st.range(0) != 0;
  TarFlow<F> m = digits_model(st.range(1), st.range(2));
  Rng g(5);
  m.visit_parameters([&](const std::string&, auto& p) { fill_normal(p.grad, g, 0.0f, 0.01f); }, "");
  AdamW<F> opt({0.9, 0.999, 1e-8, 0.01});
  Ema<F> ema(0.999);
  std::unique_ptr<FlatParameters<F>> fp;
  if (flat) fp = std::make_unique<FlatParameters<F>>(m);
  for (auto _ : st) {
    if (flat) {
      benchmark::DoNotOptimize(clip_grad_norm(*fp, 1.0));
      opt.step(*fp, m, 1e-4);
      ema.update(*fp);
    } else {
      benchmark::DoNotOptimize(clip_grad_norm(m, 1.0));
      opt.step(m, 1e-4);
      ema.update(m);
    }
  }
  st.counters["params"] = double(parameter_count(m));
  st.counters["params/s"] =
      benchmark::Counter(double(parameter_count(m)), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_OptimizerStep)->ArgsProduct({{0, 1}, {4, 8}, {2}})->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK(BM_AttentionShare)->ArgsProduct({{128}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
