// toy_density_cuda: the same RealNVP code as toy_density, switched to the GPU by one template argument.
// Trains on two moons on Cuda<float> and on Cpu<float> from the same seed and prints both losses and
// speeds; fails (exit 1) unless both learn and reach the same test NLL. Exits 77 with "skipped: no CUDA device"
// where there is no GPU (exit 1 instead when BIFLOW_REQUIRE_GPU=1).
#include <cmath>
#include <biflow/biflow.hpp>
#include <chrono>
#include <cstdio>

#include "common/args.hpp"

using namespace biflow;

template <class B>
auto make_flow(long layers, long hidden) {
  Rng init(1);
  return Repeat<dynamic, AffineCoupling<B>>(std::size_t(layers), [&](std::size_t i) {
    return make_coupling<B>(masks::half(2, int(i % 2)), {hidden, hidden}, init);
  });
}

template <class B>
double train(const char* name, long steps, long batch, long layers, long hidden) {
  auto flow = make_flow<B>(layers, hidden);
  TrainOptions o;
  o.total_steps = steps;
  o.warmup = steps / 10;
  o.clip = 5.0;
  MleTrainer<decltype(flow)> t(flow, o);
  Rng data(2), test_rng(3);
  const auto test = from_host<B>(data::toy("moons", 5000, test_rng).cast<float>());
  double loss = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long s = 0; s < steps; ++s) loss = t.step(from_host<B>(data::toy("moons", batch, data).cast<float>())).loss;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double test_nll = nll(flow, test);
  std::printf("%-5s %ld steps: final batch loss %.4f, test NLL %.4f nats, %.1f steps/s\n", name, steps, loss,
              test_nll, double(steps) / secs);
  return test_nll;
}

int main(int argc, char** argv) try {
  examples::Args a(argc, argv, "usage: toy_density_cuda [--steps 2000] [--batch 256] [--layers 8] [--hidden 64]",
                   {"steps", "batch", "layers", "hidden"});
  if (gpu::device_count() == 0) return gpu::no_device_exit("toy_density_cuda");
  cpu::keep_heap_pages();
  const long steps = a.integer("steps", 2000), batch = a.integer("batch", 256);
  const long layers = a.integer("layers", 8), hidden = a.integer("hidden", 64);
  const double gpu_nll = train<Cuda<float>>("Cuda", steps, batch, layers, hidden);
  const double cpu_nll = train<Cpu<float>>("Cpu", steps, batch, layers, hidden);
  // Same seed, same data: the two runs differ only by float rounding. The untrained flow scores ~2.6 nats.
  if (!std::isfinite(gpu_nll) || std::abs(gpu_nll - cpu_nll) > 0.05 || !(gpu_nll < 2.0)) {
    std::fprintf(stderr, "toy_density_cuda: Cuda test NLL %.4f vs Cpu %.4f (expected equal within 0.05, below 2.0)\n",
                 gpu_nll, cpu_nll);
    return 1;
  }
  std::printf("Cuda and Cpu agree: |%.4f - %.4f| <= 0.05\n", gpu_nll, cpu_nll);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "toy_density_cuda: %s\n", e.what());
  return 1;
}
