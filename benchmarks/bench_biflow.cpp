// Google Benchmark: learned inverse (BiFlow) vs exact inverse on Cpu<float>, like with like.
//   BM_Decode/<T>/<batch>/<w>               F's exact inverse: KV-cached decoding, B·(T−1) serial steps; guidance w
//                                           (w > 0: conditional + unconditional pass per step, as one 2N batch)
//   BM_DecodeDenoise/<T>/<batch>/<w>        the same + score denoising (F forward + input-only backward)
//   BM_Denoise/<T>/<batch>                  score denoising alone (F forward + input-only backward)
//   BM_G/<T>/<batch>/<w>/<denoise>/<stages> one pass of G: <stages> aligned stages (+ its learned denoising stage
//                                           when <denoise> = 1); w > 0: G takes w as an input (training-time CFG,
//                                           still one pass)
//   BM_ReverseTrainStep/<T>/<batch>         a whole ReverseTrainer step (F trajectory + G forward/backward + AdamW +
//                                           EMA), hidden alignment, 2 stages + denoise stage; counter peak_MiB: the
//                                           resident memory one step adds at its peak over the size before it
//                                           (measured once before timing, large allocations mapped one by one)
// Pairs to compare (scripts/speed_table.py builds the table from the JSON):
//   decode only        BM_Decode        vs BM_G/.../0/<stages>   (G without its denoise stage)
//   decode + denoise   BM_DecodeDenoise vs BM_G/.../1/<stages>   (G with its denoise stage)
// F: 8 blocks × 1 causal layer, width 64, 4 heads (the digits_tarflow default). T = 16: 1 × 8 × 8 digits, patch 2;
// T = 256: 4 × 32 × 32 latents, patch 2 (the paper's ImageNet shape), same width. G: width 64, 1 bidirectional
// layer per stage; stages 2 (the digits_biflow default) or 8 (F's depth). Threads: OMP_NUM_THREADS.
#include <benchmark/benchmark.h>

#include <biflow/biflow.hpp>
#include <cmath>

// Every run names the Cpu GEMM engine it measured (BIFLOW_CPU_BLAS; docs/performance.md).
static const bool biflow_engine_context = (benchmark::AddCustomContext("gemm_engine", biflow::cpu::gemm_engine()), true);

using namespace biflow;
using F = Cpu<float>;

namespace {
ImageShape image_for(long tokens) {
  return tokens == 16 ? ImageShape{1, 8, 8, 2, PatchOrder::channel_major}
                      : ImageShape{4, 32, 32, 2, PatchOrder::channel_major};
}

TarFlow<F> flow_model(long tokens) {
  TarFlowConfig cfg;
  cfg.image = image_for(tokens);
  cfg.width = 64;
  cfg.blocks = 8;
  cfg.layers = 1;
  cfg.heads = 4;
  cfg.num_classes = 10;
  Rng r(1);
  TarFlow<F> m(cfg, r);
  Rng q(2);  // non-zero output projections, as after training
  m.visit_parameters([&](const std::string&, auto& p) {
    if (p.value.rows() > 1) fill_normal(p.value, q, 0.0f, 0.02f);
  }, "");
  return m;
}
ReverseConfig reverse_config(long tokens, long stages, bool denoise, bool guidance) {
  const ImageShape im = image_for(tokens);
  ReverseConfig c;
  c.tokens = im.tokens();
  c.token_dim = im.token_dim();
  c.width = 64;
  c.stages = stages;
  c.layers = 1;
  c.heads = 4;
  c.cond_features = 11;
  c.denoise_stage = denoise;
  c.guidance = guidance;
  return c;
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
void per_image(benchmark::State& st, long n) {
  st.counters["images/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Decode(benchmark::State& st) {
  const long T = st.range(0), n = st.range(1);
  const double w = double(st.range(2));
  cpu::keep_heap_pages();
  const TarFlow<F> f = flow_model(T);
  const Tensor<F> z = randn(n, f.config().image.features(), 3), c = cond_rows(n);
  for (auto _ : st) benchmark::DoNotOptimize(f.inverse(z, c, Guidance<F>{w, false, {}}, logdet::none).y.data());
  per_image(st, n);
}
void BM_DecodeDenoise(benchmark::State& st) {
  const long T = st.range(0), n = st.range(1);
  const double w = double(st.range(2));
  cpu::keep_heap_pages();
  TarFlow<F> f = flow_model(T);
  const Tensor<F> z = randn(n, f.config().image.features(), 3), c = cond_rows(n);
  for (auto _ : st) {
    const Tensor<F> x = f.inverse(z, c, Guidance<F>{w, false, {}}, logdet::none).y;
    benchmark::DoNotOptimize(denoise(f, x, 0.05, c).data());
  }
  per_image(st, n);
}
void BM_Denoise(benchmark::State& st) {
  const long T = st.range(0), n = st.range(1);
  cpu::keep_heap_pages();
  TarFlow<F> f = flow_model(T);
  const Tensor<F> x = randn(n, f.config().image.features(), 3), c = cond_rows(n);
  for (auto _ : st) benchmark::DoNotOptimize(denoise(f, x, 0.05, c).data());
  per_image(st, n);
}
void BM_G(benchmark::State& st) {
  const long T = st.range(0), n = st.range(1), stages = st.range(4);
  const double w = double(st.range(2));
  const bool denoise_stage = st.range(3) != 0;
  cpu::keep_heap_pages();
  const TarFlow<F> f = flow_model(T);
  Rng r(4);
  const ReverseModel<F> g(reverse_config(T, stages, denoise_stage, w != 0), r);
  const BiFlow bf{f, g};
  const Tensor<F> z = randn(n, f.config().image.features(), 3), c = cond_rows(n);
  const Tensor<F> wt = w != 0 ? constant<F>(n, 1, float(w)) : Tensor<F>{};
  for (auto _ : st) benchmark::DoNotOptimize(bf.generate(z, c, wt).data());
  per_image(st, n);
}
void BM_ReverseTrainStep(benchmark::State& st) {
  const long T = st.range(0), n = st.range(1);
  TarFlow<F> f = flow_model(T);
  Rng r(4);
  const ReverseConfig rc = reverse_config(T, 2, true, false);
  ReverseModel<F> g(rc, r);
  HiddenAlignment<F> s(rc, r);
  ReverseTrainOptions o;
  o.noise = 0.05;
  o.optim.ema_decay = 0.999;
  o.optim.verbose = false;
  ReverseTrainer<TarFlow<F>, ReverseModel<F>, HiddenAlignment<F>> tr(f, g, s, o);
  const Tensor<F> x = randn(n, f.config().image.features(), 3), c = cond_rows(n);
  Rng rng(5);
  // Memory first: one step allocates the optimiser and EMA state, the next one is measured.
  cpu::map_large_allocations();
  tr.step(x, c, rng);
  const long long before = cpu::resident_bytes();
  const bool can_reset = cpu::reset_resident_peak();
  tr.step(x, c, rng);
  const long long peak = cpu::resident_peak_bytes();
  if (can_reset && before > 0 && peak > 0) st.counters["peak_MiB"] = double(peak - before) / double(1 << 20);
  cpu::keep_heap_pages();
  for (auto _ : st) benchmark::DoNotOptimize(tr.step(x, c, rng).loss);
  per_image(st, n);
}
}  // namespace

BENCHMARK(BM_Decode)->ArgsProduct({{16, 256}, {1, 100}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DecodeDenoise)->ArgsProduct({{16, 256}, {1, 100}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Denoise)->ArgsProduct({{16, 256}, {1, 100}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_G)->ArgsProduct({{16, 256}, {1, 100}, {0, 1}, {0, 1}, {2, 8}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReverseTrainStep)->Args({16, 128})->Args({256, 16})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
