// Google Benchmark: learned inverse (BiFlow) vs exact inverse on Cpu<float>.
//   BM_Exact/<T>/<batch>:        F's exact inverse (KV-cached decoding) + score denoising (forward + backward)
//   BM_Learned/<T>/<batch>:      one pass of G (learned denoising stage included)
//   BM_ReverseTrainStep/<batch>: a whole ReverseTrainer step (F trajectory + G forward/backward + AdamW)
// F: the digits TARFlow shape (8 blocks x 1 layer, width 64) on 1 x (2·sqrt(T)) x (2·sqrt(T)) images, patch 2;
// G: the digits_biflow default, 2 stages + denoise stage, 1 bidirectional layer each, width 64. The ratio Exact / Learned at the same T and
// batch is the speedup the digits example reports (counters: images/s). Threads: as the environment sets
// (OMP_NUM_THREADS); docs/performance.md records which.
#include <benchmark/benchmark.h>

#include <biflow/biflow.hpp>
#include <cmath>

using namespace biflow;
using F = Cpu<float>;

namespace {
long side_for(long tokens) { return 2 * long(std::lround(std::sqrt(double(tokens)))); }

TarFlow<F> flow_model(long tokens) {
  TarFlowConfig cfg;
  const long s = side_for(tokens);
  cfg.image = {1, s, s, 2, PatchOrder::channel_major};
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
ReverseConfig reverse_config(long tokens) {
  ReverseConfig c;
  c.tokens = tokens;
  c.token_dim = 4;
  c.width = 64;
  c.stages = 2;
  c.layers = 1;
  c.heads = 4;
  c.cond_features = 11;
  c.denoise_stage = true;
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

void BM_Exact(benchmark::State& st) {
  const long T = st.range(0), n = st.range(1);
  cpu::keep_heap_pages();
  TarFlow<F> f = flow_model(T);
  const Tensor<F> z = randn(n, 4 * T, 3), c = cond_rows(n);
  for (auto _ : st) {
    const Tensor<F> x = f.sample(z, c, {}, false).y;
    benchmark::DoNotOptimize(denoise(f, x, 0.05, c).data());
  }
  st.counters["images/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}
void BM_Learned(benchmark::State& st) {
  const long T = st.range(0), n = st.range(1);
  cpu::keep_heap_pages();
  TarFlow<F> f = flow_model(T);
  Rng r(4);
  ReverseModel<F> g(reverse_config(T), r);
  const BiFlow bf{f, g};
  const Tensor<F> z = randn(n, 4 * T, 3), c = cond_rows(n);
  for (auto _ : st) benchmark::DoNotOptimize(bf.sample(z, c).data());
  st.counters["images/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}
void BM_ReverseTrainStep(benchmark::State& st) {
  const long n = st.range(0);
  cpu::keep_heap_pages();
  TarFlow<F> f = flow_model(16);
  Rng r(4);
  const ReverseConfig rc = reverse_config(16);
  ReverseModel<F> g(rc, r);
  HiddenAlignment<F> s(rc, r);
  ReverseTrainOptions o;
  o.noise = 0.05;
  o.optim.ema_decay = 0.999;
  o.optim.verbose = false;
  ReverseTrainer<TarFlow<F>, ReverseModel<F>, HiddenAlignment<F>> tr(f, g, s, o);
  const Tensor<F> x = randn(n, 64, 3), c = cond_rows(n);
  Rng rng(5);
  for (auto _ : st) benchmark::DoNotOptimize(tr.step(x, c, rng).loss);
  st.counters["images/s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}
}  // namespace

BENCHMARK(BM_Exact)->ArgsProduct({{16, 64}, {1, 16, 100}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Learned)->ArgsProduct({{16, 64}, {1, 16, 100}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReverseTrainStep)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
