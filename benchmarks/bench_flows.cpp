// Google Benchmark: flow training throughput and the Cpu GEMM primitive vs raw Eigen.
//   BM_ForwardBackward/<model>/<D>/<batch>: NLL forward + backward of an 8-layer flow (hidden 2x64), items = samples
//   BM_TrainStep/<model>: a whole MleTrainer step (forward, backward, clip, AdamW) at D=2, batch 256 — the figure
//                         compared with PyTorch in benchmarks/reference/compare_toy.py
//   BM_TrainStep_NsfAr: the same for 8 autoregressive spline layers (the zuko comparison's NSF row)
//   BM_ElboStep_Planar16 / _Iaf4: one ElboTrainer step (256 samples) on the banana target
//   BM_ResidualLogdet/<policy>: a residual block's forward with the log-det at D = 16, batch 256: 0 exact (D VJPs +
//                         host LU), 1 Hutchinson<1> 10 terms, 2 roulette<1> (E[n] = 3), 3 Hutchinson<4> 10 terms
//   BM_ResidualInverse/<batch>: fixed-point inverse of 4 residual blocks (D = 2) to the float tolerance
//   BM_Gemm*/m/k/n: biflow::gemm (x Wᵀ as in Linear) vs the same product written directly in Eigen, GFLOP/s
#include <benchmark/benchmark.h>

#include <biflow/biflow.hpp>

// Every run names the Cpu GEMM engine it measured (BIFLOW_CPU_BLAS; docs/performance.md).
static const bool biflow_engine_context = (benchmark::AddCustomContext("gemm_engine", biflow::cpu::gemm_engine()), true);

using namespace biflow;
using F = Cpu<float>;
using RealNVP = Repeat<dynamic, AffineCoupling<F>>;
using Maf = Repeat<dynamic, Sequential<MaskedAutoregressive<F>, Permutation<F>>>;

namespace {
RealNVP realnvp(long d) {
  Rng r(1);
  return RealNVP(8, [&](std::size_t i) { return make_coupling<F>(masks::half(d, int(i % 2)), {64, 64}, r); });
}
Maf maf(long d) {
  Rng r(1);
  return Maf(8, [&](std::size_t) {
    return Sequential<MaskedAutoregressive<F>, Permutation<F>>(MaskedAutoregressive<F>(d, {64, 64}, r),
                                                               Permutation<F>::reverse(d));
  });
}
Tensor<F> batch(long n, long d) {
  Rng r(2);
  Tensor<F> x(n, d);
  fill_normal(x, r);
  return x;
}
template <class Flow>
void forward_backward(benchmark::State& st, Flow flow) {
  const long d = st.range(0), n = st.range(1);
  const Tensor<F> x = batch(n, d);
  for (auto _ : st) {
    zero_grad(flow);
    benchmark::DoNotOptimize(nll_forward_backward(flow, x));
  }
  st.SetItemsProcessed(st.iterations() * n);
  st.counters["params"] = double(parameter_count(flow));
}
void BM_ForwardBackward_RealNVP(benchmark::State& st) { forward_backward(st, realnvp(st.range(0))); }
void BM_ForwardBackward_MAF(benchmark::State& st) { forward_backward(st, maf(st.range(0))); }

template <class Flow>
void train_step(benchmark::State& st, Flow flow) {
  TrainOptions o;
  o.total_steps = 1 << 30;
  o.clip = 5.0;
  MleTrainer<Flow> t(flow, o);
  Rng data(3);
  for (auto _ : st) {
    st.PauseTiming();
    const Tensor<F> x = from_host<F>(data::toy("moons", 256, data).cast<float>());
    st.ResumeTiming();
    benchmark::DoNotOptimize(t.step(x).loss);
  }
  st.SetItemsProcessed(st.iterations() * 256);
}
void BM_TrainStep_RealNVP(benchmark::State& st) { train_step(st, realnvp(2)); }
void BM_TrainStep_MAF(benchmark::State& st) { train_step(st, maf(2)); }

using NsfAr = Repeat<dynamic, Sequential<SplineAutoregressive<F>, Permutation<F>>>;
void BM_TrainStep_NsfAr(benchmark::State& st) {
  Rng r(1);
  train_step(st, NsfAr(8, [&](std::size_t) {
    return Sequential<SplineAutoregressive<F>, Permutation<F>>(SplineAutoregressive<F>(2, {64, 64}, r),
                                                               Permutation<F>::reverse(2));
  }));
}
template <class Flow>
void elbo_step(benchmark::State& st, Flow flow) {
  const vi::HostTarget t = vi::targets::banana();
  TrainOptions o;
  o.total_steps = 1 << 30;
  o.clip = 10;
  vi::ElboTrainer<Flow, vi::HostTarget> tr(flow, t, o, 256);
  Rng rng(4);
  for (auto _ : st) benchmark::DoNotOptimize(tr.step(rng).loss);
  st.SetItemsProcessed(st.iterations() * 256);
}
void BM_ElboStep_Planar16(benchmark::State& st) {
  Rng r(1);
  elbo_step(st, Repeat<dynamic, Planar<F>>(16, [&](std::size_t) { return Planar<F>(2, r); }));
}
void BM_ElboStep_Iaf4(benchmark::State& st) {
  Rng r(1);
  elbo_step(st, Repeat<dynamic, Sequential<MaskedAutoregressive<F>, Permutation<F>>>(4, [&](std::size_t) {
    return Sequential<MaskedAutoregressive<F>, Permutation<F>>(MaskedAutoregressive<F>(2, {32, 32}, r),
                                                               Permutation<F>::reverse(2));
  }));
}
void BM_ResidualLogdet(benchmark::State& st) {
  Rng r(1), pr(2);
  residual::Options o;
  o.hidden = {64, 64};
  Residual<F> l(16, r, o);
  const Tensor<F> x = batch(256, 16);
  for (auto _ : st) {
    Residual<F>::Context c;
    switch (st.range(0)) {
      case 0: benchmark::DoNotOptimize(l.forward(x, c).logdet.data()); break;
      case 1: benchmark::DoNotOptimize(l.forward(x, c, {}, logdet::hutchinson<1>(pr, 10)).logdet.data()); break;
      case 2: benchmark::DoNotOptimize(l.forward(x, c, {}, logdet::russian_roulette<1>(pr)).logdet.data()); break;
      default: benchmark::DoNotOptimize(l.forward(x, c, {}, logdet::hutchinson<4>(pr, 10)).logdet.data()); break;
    }
  }
  st.SetItemsProcessed(st.iterations() * 256);
}
void BM_ResidualInverse(benchmark::State& st) {
  Rng r(1);
  residual::Options o;
  o.hidden = {64, 64};
  Repeat<dynamic, Residual<F>> flow(4, [&](std::size_t) { return Residual<F>(2, r, o); });
  const Tensor<F> y = batch(st.range(0), 2);
  for (auto _ : st) benchmark::DoNotOptimize(flow.inverse(y, {}, logdet::none).y.data());
  st.SetItemsProcessed(st.iterations() * st.range(0));
}

void gemm_args(benchmark::internal::Benchmark* b) {
  for (auto s : std::vector<std::vector<long>>{{256, 64, 64}, {4096, 64, 64}, {256, 512, 512}, {1024, 1024, 1024}})
    b->Args({s[0], s[1], s[2]});
}
void flops(benchmark::State& st) {
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(st.range(0) * st.range(1) * st.range(2)) * double(st.iterations()),
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
void BM_Gemm_biflow(benchmark::State& st) {
  const long m = st.range(0), k = st.range(1), n = st.range(2);
  const Tensor<F> x = batch(m, k), w = batch(n, k);
  Tensor<F> y(m, n);
  for (auto _ : st) {
    gemm(x, false, w, true, y);
    benchmark::DoNotOptimize(y.data());
  }
  flops(st);
}
void BM_Gemm_eigen(benchmark::State& st) {
  const long m = st.range(0), k = st.range(1), n = st.range(2);
  const HostMatrix<float> x = to_host(batch(m, k)), w = to_host(batch(n, k));
  HostMatrix<float> y(m, n);
  for (auto _ : st) {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
  }
  flops(st);
}
}  // namespace

BENCHMARK(BM_ForwardBackward_RealNVP)->ArgNames({"D", "batch"})->ArgsProduct({{2, 64}, {256, 4096}})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ForwardBackward_MAF)->ArgNames({"D", "batch"})->ArgsProduct({{2, 64}, {256, 4096}})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TrainStep_RealNVP)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TrainStep_MAF)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TrainStep_NsfAr)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ElboStep_Planar16)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ElboStep_Iaf4)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResidualLogdet)->ArgName("policy")->DenseRange(0, 3)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResidualInverse)->ArgName("batch")->Arg(1)->Arg(4096)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Gemm_biflow)->ArgNames({"m", "k", "n"})->Apply(gemm_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Gemm_eigen)->ArgNames({"m", "k", "n"})->Apply(gemm_args)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  cpu::keep_heap_pages();  // as the examples do; see backend/cpu/allocator.hpp
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
