// latent_biflow: BiFlow on ImageNet-latent-shaped data — N x 4 x 32 x 32 float32 latents (.npy) with class labels,
// or synthetic latents of that shape when you have none. Trains a class-conditional TARFlow F (patch 2, noise
// augmentation) by maximum likelihood, freezes it, trains the learned inverse G (hidden alignment + learned
// denoising), and reports training throughput (tokens/s), sampling throughput of F's exact inverse + score
// denoising vs G's one pass (images/s and their ratio), how close G's samples are to the exact inverse, and peak
// memory (device memory pool on Cuda, process RSS on Cpu).
//
// The same code runs on Cpu<float> and, built by nvcc (latent_biflow_cuda), on Cuda<float>: --backend cpu|cuda.
//   latent_biflow --synthetic 2048                       small CPU-sized run
//   latent_biflow_cuda --preset b2 --data lat.npy --labels y.npy --report out.json
// Data parallel: mpirun -np 2 latent_biflow --distributed mpi ... (CPU ranks), or one process per GPU with
// latent_biflow_cuda --distributed nccl (see docs/distributed.md); --batch is the global batch.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numbers>
#include <string>
#include <vector>

#include <biflow/biflow.hpp>
#include <biflow/io/npy.hpp>

#include "common/args.hpp"
#include "common/distributed.hpp"
#include "common/quality.hpp"

using namespace biflow;

namespace {

constexpr const char* kUsage =
    "usage: latent_biflow [--backend cpu|cuda] [--preset tiny|b2] [--report out.json]\n"
    "  data:   [--data latents.npy --labels labels.npy] (N x C x S x S float32; N integer labels)\n"
    "          [--synthetic 2048] [--write-synthetic prefix] [--classes 10] [--channels 4] [--size 32] [--patch 2]\n"
    "  F:      [--width 64] [--blocks 2] [--layers 1] [--heads 4] [--noise 0.05] [--flow-steps 200] [--batch 32]\n"
    "          [--lr 1e-3]\n"
    "  G:      [--g-width W] [--stages 2] [--g-layers 1] [--steps 200] [--g-lr 1e-3]\n"
    "  speed:  [--sample-batch 32] [--repeats 3] [--tf32 | --bf16] (Cuda: TF32 or bf16-operand tensor-core GEMMs)\n"
    "  ranks:  [--distributed none|mpi|nccl] [--nccl-id-file PATH] [--nccl-timeout 600] (under mpirun / srun; the\n"
    "          batch is global: each rank trains on batch / ranks rows of it) [--overlap 1|0] [--bucket-mb 4]\n"
    "  --save-samples DIR: exact.npy and learned.npy (float32, sample-batch x C*S*S, same noise, rows in label\n"
    "  order) and labels.npy (int64)\n"
    "  --preset b2 sets the BiFlow-B/2-like sizes: width 768, 12 heads (head dim 64), F 8 blocks x 2 layers,\n"
    "  G 4 stages x 3 layers (+ the denoise stage), batch 64, sample batch 64. Flags after it override it.";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Peak memory of the backend since the last reset_peak_memory<B>(): the device pool on Cuda; the process's
/// resident set on Cpu (its high-water mark is reset through /proc; where that is unsupported the figure is the
/// process's peak so far).
template <class B>
double peak_mib() {
  return double(memory_usage<B>().peak) / (1024.0 * 1024.0);
}

/// Synthetic class-conditional latents with spatial structure: per class a fixed smooth pattern (a few random
/// low-frequency cosines per channel), per sample a smooth random variation of it and white noise; about unit
/// variance like scaled VAE latents. Deterministic in the seed.
HostMatrix<float> synthetic_latents(const std::vector<int>& labels, long classes, long C, long S, std::uint64_t seed) {
  struct Wave {
    double fx, fy, phase, amp;
  };
  Rng rng(seed);
  auto waves = [&](int n, double amp) {
    std::vector<Wave> w(static_cast<std::size_t>(n));
    for (auto& v : w)
      v = {double(rng.below(4)) + 0.5, double(rng.below(4)) + 0.5, 2 * std::numbers::pi * rng.uniform(),
           amp * (0.5 + rng.uniform())};
    return w;
  };
  std::vector<std::vector<Wave>> cls(static_cast<std::size_t>(classes * C));
  for (auto& w : cls) w = waves(3, 0.6);
  HostMatrix<float> x(long(labels.size()), C * S * S);
  for (long n = 0; n < x.rows(); ++n)
    for (long c = 0; c < C; ++c) {
      const auto& base = cls[std::size_t(labels[std::size_t(n)] * C + c)];
      const auto var = waves(2, 0.25);
      for (long i = 0; i < S; ++i)
        for (long j = 0; j < S; ++j) {
          double v = 0;
          for (const auto* ws : {&base, &var})
            for (const Wave& w : *ws)
              v += w.amp * std::cos(2 * std::numbers::pi * (w.fx * double(i) + w.fy * double(j)) / double(S) + w.phase);
          x(n, (c * S + i) * S + j) = float(v + 0.3 * rng.normal());
        }
    }
  return x;
}

struct Data {
  HostMatrix<float> x;
  std::vector<int> labels;
};

Data load_or_make(const examples::Args& a, long classes, long C, long S) {
  Data d;
  if (a.has("data")) {
    if (!a.has("labels")) a.fail("--data needs --labels (one integer class per latent)");
    const io::NpyArray arr = io::read_npy(a.str("data", ""));
    if (arr.data.cols() != C * S * S)
      throw shape_error(detail::cat("latent_biflow: ", a.str("data", ""), " has ", arr.data.cols(),
                                    " values per row; --channels ", C, " --size ", S, " expects ", C * S * S));
    d.x = arr.data.cast<float>();
    data::require_finite(d.x, a.str("data", ""));
    const HostMatrix<double> l = io::read_npy(a.str("labels", "")).data;
    if (l.size() != d.x.rows())
      throw shape_error(detail::cat("latent_biflow: ", l.size(), " labels for ", d.x.rows(), " latents"));
    for (long i = 0; i < l.size(); ++i) {
      const double v = l.data()[i];
      if (v != std::floor(v) || v < 0 || v >= double(classes))
        throw usage_error(detail::cat("latent_biflow: label ", v, " (row ", i, ") is not an integer in [0, ", classes,
                                      "); set --classes"));
      d.labels.push_back(int(v));
    }
    return d;
  }
  const long n = a.integer("synthetic", 2048);
  Rng lr(7);
  for (long i = 0; i < n; ++i) d.labels.push_back(int(lr.below(std::uint64_t(classes))));
  d.x = synthetic_latents(d.labels, classes, C, S, 11);
  if (a.has("write-synthetic")) {
    const std::string p = a.str("write-synthetic", "");
    io::save_npy(p + "_latents.npy", d.x, {n, C, S, S});
    HostMatrix<float> l(n, 1);
    for (long i = 0; i < n; ++i) l(i, 0) = float(d.labels[std::size_t(i)]);
    io::save_npy(p + "_labels.npy", l, {n});
    std::printf("wrote %s_latents.npy (%ld x %ld x %ld x %ld) and %s_labels.npy\n", p.c_str(), n, C, S, S, p.c_str());
  }
  return d;
}

/// Rows `idx` of x and their labels.
HostMatrix<float> rows_of(const HostMatrix<float>& x, const std::vector<long>& idx) {
  HostMatrix<float> out(long(idx.size()), x.cols());
  for (std::size_t i = 0; i < idx.size(); ++i) out.row(long(i)) = x.row(idx[i]);
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class B>
int run(const examples::Args& a, const char* device, examples::Distributed& distributed) {
  const bool b2 = a.str("preset", "tiny") == "b2";
  const long classes = a.integer("classes", 10), C = a.integer("channels", 4), S = a.integer("size", 32);
  const long patch = a.integer("patch", 2);
  TarFlowConfig fc;
  fc.image = {C, S, S, patch, PatchOrder::channel_major};
  fc.width = a.integer("width", b2 ? 768 : 64);
  fc.blocks = a.integer("blocks", b2 ? 8 : 2);
  fc.layers = a.integer("layers", b2 ? 2 : 1);
  fc.heads = a.integer("heads", b2 ? 12 : 4);
  fc.num_classes = classes;
  const double sigma = a.real("noise", 0.05);
  const long batch = a.integer("batch", b2 ? 64 : 32), flow_steps = a.integer("flow-steps", 200);
  const long g_steps = a.integer("steps", 200), sample_batch = a.integer("sample-batch", b2 ? 64 : 32);
  const long repeats = std::max(1L, a.integer("repeats", 3));
  if (S % patch) a.fail("--size must be a multiple of --patch");
  const long T = fc.image.tokens(), D = C * S * S;

  // Data parallel: every rank draws each whole global batch (rows, noise, label dropout) from the same Rng and
  // trains on its shard of the rows; gradients are averaged (dist::make_data_parallel).
  dist::AnyCommunicator& comm = distributed.comm();
  const bool parallel = comm.size() > 1;
  const dist::Shard shard = dist::shard(batch, comm.rank(), comm.size());
  const auto mine = [&](const Tensor<B>& t) { return parallel ? slice_rows(t, shard.begin, shard.size()) : t; };
  if (parallel) std::printf("data parallel (%s): %d ranks, %ld rows each\n", distributed.how().c_str(), comm.size(),
                            shard.size());

  const Data data = load_or_make(a, classes, C, S);
  const long N = data.x.rows();
  if (N < batch) a.fail("need at least --batch latents");
  std::printf("latent_biflow on %s: %ld latents of %ld x %ld x %ld, %ld classes; T = %ld tokens of %ld values\n", device,
              N, C, S, S, classes, T, fc.image.token_dim());

  // ---- F: maximum likelihood with noise augmentation and label dropout ----
  Rng init(1), rng(2);
  TarFlow<B> flow(fc, init);
  std::printf("F: TarFlow %ld blocks x %ld layers, width %ld, %ld heads: %.1f M parameters\n", fc.blocks, fc.layers,
              fc.width, fc.heads, double(parameter_count(flow)) / 1e6);
  TrainOptions o;
  o.lr = a.real("lr", 1e-3);
  o.total_steps = flow_steps;
  o.warmup = std::min(100L, flow_steps / 10);
  o.beta2 = 0.95;
  o.weight_decay = 1e-4;
  o.clip = 1.0;
  MleTrainer<TarFlow<B>> trainer(flow, o);
  std::shared_ptr<const dist::ReduceStats> f_comm, g_comm;
  // Gradient buckets start their all-reduce while the backward runs (--overlap 0: one pass after it).
  const dist::DataParallelOptions dpo{.overlap = a.integer("overlap", 1) != 0, .bucket_mb = a.real("bucket-mb", 4.0)};
  if (parallel) f_comm = dist::make_data_parallel(trainer, flow, comm, dpo);
  auto draw = [&](long n, HostMatrix<float>& x, std::vector<int>& l) {
    std::vector<long> idx(static_cast<std::size_t>(n));
    for (auto& i : idx) i = long(rng.below(std::uint64_t(N)));
    x = rows_of(data.x, idx);
    l.clear();
    for (long i : idx) l.push_back(data.labels[std::size_t(i)]);
  };
  HostMatrix<float> xb;
  std::vector<int> lb;
  reset_peak_memory<B>();
  double first_loss = 0, last_loss = 0, flow_seconds = 0;
  for (long s = 0; s < flow_steps; ++s) {
    draw(batch, xb, lb);
    Tensor<B> x = from_host<B>(xb);
    Tensor<B> e(x.rows(), x.cols(), uninit);
    fill_normal(e, rng, 0.0f, float(sigma));
    add_inplace(x, e);
    const Tensor<B> c = from_host<B>(data::class_condition(lb, classes, 0.1, rng));
    const auto t0 = std::chrono::steady_clock::now();
    const StepResult r = trainer.step(mine(x), mine(c));  // returns the loss: the step has finished on the device
    if (s > 0 || flow_steps == 1) flow_seconds += seconds_since(t0);  // step 0 includes one-time allocations
    if (s == 0) first_loss = r.loss / double(D);
    last_loss = r.loss / double(D);
    if (flow_steps >= 10 && (s + 1) % (flow_steps / 5) == 0)
      std::printf("  F step %5ld  NLL %.4f nats/dim\n", s + 1, last_loss);
  }
  const long timed_f = std::max(1L, flow_steps - 1);
  const double f_tokens_s = double(timed_f * batch * T) / flow_seconds;
  const double f_peak = peak_mib<B>();
  std::printf("F trained: NLL %.4f -> %.4f nats/dim; %.0f tokens/s (%.1f ms/step at batch %ld); peak memory %.0f MiB\n",
              first_loss, last_loss, f_tokens_s, 1e3 * flow_seconds / double(timed_f), batch, f_peak);

  // ---- G: hidden alignment + learned denoising, F frozen ----
  ReverseConfig rc;
  rc.tokens = T;
  rc.token_dim = fc.image.token_dim();
  rc.width = a.integer("g-width", fc.width);
  rc.stages = a.integer("stages", b2 ? 4 : 2);
  rc.layers = a.integer("g-layers", b2 ? 3 : 1);
  rc.heads = fc.heads;
  rc.cond_features = fc.cond_features();
  rc.denoise_stage = true;
  Rng ginit(3);
  ReverseModel<B> g(rc, ginit);
  HiddenAlignment<B> align(rc, ginit);
  std::printf("G: %ld stages (incl. denoise) x %ld layers, width %ld: %.1f M parameters\n", rc.total_stages(), rc.layers,
              rc.width, double(parameter_count(g)) / 1e6);
  ReverseTrainOptions ro;
  ro.optim = o;
  ro.optim.lr = a.real("g-lr", 1e-3);
  ro.optim.total_steps = g_steps;
  ro.optim.warmup = std::min(100L, g_steps / 10);
  ro.noise = sigma;
  ReverseTrainer<TarFlow<B>, ReverseModel<B>, HiddenAlignment<B>> gt(flow, g, align, ro);
  auto g_trainable = gt.trainable();
  if (parallel) g_comm = dist::make_data_parallel(gt, g_trainable, comm, dpo);
  // The step's noise and guidance draws are made for the whole global batch: the ranks' Rngs stay in step.
  const BatchRows rows{shard.begin, parallel ? batch : 0};
  reset_peak_memory<B>();
  double g_seconds = 0, g_first = 0, g_last = 0;
  for (long s = 0; s < g_steps; ++s) {
    draw(batch, xb, lb);
    const Tensor<B> x = from_host<B>(xb);
    const Tensor<B> c = from_host<B>(data::class_condition(lb, classes, 0.1, rng));
    const auto t0 = std::chrono::steady_clock::now();
    const ReverseStepResult r = gt.step(mine(x), mine(c), rng, rows);
    if (s > 0 || g_steps == 1) g_seconds += seconds_since(t0);
    if (s == 0) g_first = r.output_loss;
    g_last = r.output_loss;
    if (g_steps >= 10 && (s + 1) % (g_steps / 5) == 0)
      std::printf("  G step %5ld  loss %.4f (output %.4f)\n", s + 1, r.loss, r.output_loss);
  }
  const long timed_g = std::max(1L, g_steps - 1);
  const double g_tokens_s = double(timed_g * batch * T) / g_seconds;
  const double g_peak = peak_mib<B>();
  std::printf("G trained: output MSE %.4f -> %.4f; %.0f tokens/s (%.1f ms/step); peak memory %.0f MiB\n", g_first,
              g_last, g_tokens_s, 1e3 * g_seconds / double(timed_g), g_peak);
  // What averaging the gradients cost per step beyond what the backward hid, and as a share of the step.
  const auto comm_line = [&](const char* what, const std::shared_ptr<const dist::ReduceStats>& st, double step_ms) {
    if (st)
      std::printf("%s all-reduce: %.3f ms per step not hidden by the backward, over %ld values (%.1f%% of a %.1f ms "
                  "step); %ld of %ld buckets started during the backward\n", what, st->mean_ms(),
                  st->values / std::max(1L, st->calls), 100.0 * st->mean_ms() / step_ms, step_ms, st->early_buckets,
                  st->buckets);
  };
  comm_line("F", f_comm, 1e3 * flow_seconds / double(timed_f));
  comm_line("G", g_comm, 1e3 * g_seconds / double(timed_g));

  // ---- sampling: exact inverse (KV-cached decoding) + score denoising vs G's one pass, same z, same batch ----
  Rng srng(4);
  std::vector<int> sl(static_cast<std::size_t>(sample_batch));
  for (long i = 0; i < sample_batch; ++i) sl[std::size_t(i)] = int(i % classes);
  const Tensor<B> c = from_host<B>(data::one_hot<float>(sl, classes + 1));
  const Tensor<B> z = StandardNormal::sample<B>(sample_batch, D, srng);
  const BiFlow bf{flow, g};
  reset_peak_memory<B>();
  Tensor<B> exact, learned;
  std::vector<double> te, tl;
  for (long r = 0; r <= repeats; ++r) {  // r = 0 warms up (allocations, cuBLAS heuristics)
    synchronize<B>();
    auto t0 = std::chrono::steady_clock::now();
    exact = denoise(flow, flow.inverse(z, c, logdet::none).y, sigma, c);
    synchronize<B>();
    if (r > 0) te.push_back(seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    learned = bf.generate(z, c);
    synchronize<B>();
    if (r > 0) tl.push_back(seconds_since(t0));
  }
  const double s_peak = peak_mib<B>();
  const double exact_ips = double(sample_batch) / median(te), learned_ips = double(sample_batch) / median(tl);
  const HostMatrix<float> he = to_host(exact), hl = to_host(learned);
  const double mse = double((he - hl).squaredNorm()) / double(he.size());
  if (distributed.lead() && a.has("save-samples")) {  // rows grouped by label (stable), same noise for both
    std::vector<long> order(static_cast<std::size_t>(sample_batch));
    for (long i = 0; i < sample_batch; ++i) order[std::size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](long x, long y) { return sl[std::size_t(x)] < sl[std::size_t(y)]; });
    std::vector<int> sorted_labels;
    for (long i : order) sorted_labels.push_back(sl[std::size_t(i)]);
    examples::save_samples(a.str("save-samples", ""), {{"exact", rows_of(he, order)}, {"learned", rows_of(hl, order)}},
                           sorted_labels);
  }
  const double var = double((he.array() - he.mean()).square().mean());
  std::printf("sampling at batch %ld (median of %ld): exact inverse + score denoising %.1f images/s, learned G %.1f "
              "images/s: %.1fx faster\n",
              sample_batch, repeats, exact_ips, learned_ips, learned_ips / exact_ips);
  std::printf("G vs exact inverse on the same noise: MSE %.4f (exact samples' variance %.4f); peak memory %.0f MiB\n",
              mse, var, s_peak);
  if (!std::isfinite(mse)) throw numeric_error("latent_biflow: non-finite samples");

  if (distributed.lead() && a.has("report")) {
    std::ofstream f(a.str("report", ""));
    f << "{\n  \"device\": \"" << device << "\",\n  \"ranks\": " << comm.size()
      << ",\n  \"f_allreduce_ms\": " << (f_comm ? f_comm->mean_ms() : 0.0)
      << ",\n  \"g_allreduce_ms\": " << (g_comm ? g_comm->mean_ms() : 0.0) << ",\n  \"latents\": " << N << ",\n  \"tokens\": " << T
      << ",\n  \"width\": " << fc.width << ",\n  \"blocks\": " << fc.blocks << ",\n  \"layers\": " << fc.layers
      << ",\n  \"f_params\": " << parameter_count(flow) << ",\n  \"g_params\": " << parameter_count(g)
      << ",\n  \"batch\": " << batch << ",\n  \"f_nll_first\": " << first_loss << ",\n  \"f_nll_last\": " << last_loss
      << ",\n  \"f_tokens_per_s\": " << f_tokens_s << ",\n  \"f_peak_mib\": " << f_peak
      << ",\n  \"g_loss_first\": " << g_first << ",\n  \"g_loss_last\": " << g_last
      << ",\n  \"g_tokens_per_s\": " << g_tokens_s << ",\n  \"g_peak_mib\": " << g_peak
      << ",\n  \"sample_batch\": " << sample_batch << ",\n  \"exact_images_per_s\": " << exact_ips
      << ",\n  \"learned_images_per_s\": " << learned_ips << ",\n  \"speedup\": " << learned_ips / exact_ips
      << ",\n  \"g_vs_exact_mse\": " << mse << ",\n  \"exact_variance\": " << var
      << ",\n  \"sampling_peak_mib\": " << s_peak << "\n}\n";
    if (!f) throw io_error("latent_biflow: cannot write --report " + a.str("report", ""));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  examples::Args a(argc, argv, kUsage,
                   {"backend", "preset", "report", "data", "labels", "synthetic", "write-synthetic", "classes",
                    "channels", "size", "patch", "width", "blocks", "layers", "heads", "noise", "flow-steps", "batch",
                    "lr", "g-width", "stages", "g-layers", "steps", "g-lr", "sample-batch", "repeats", "save-samples",
                    "distributed", "nccl-id-file", "nccl-timeout", "overlap", "bucket-mb"},
                   {"tf32", "bf16"});
  const std::string preset = a.str("preset", "tiny");
  if (preset != "tiny" && preset != "b2") a.fail("--preset must be tiny or b2");
#if defined(__CUDACC__)
  const std::string backend = a.str("backend", "cuda");
  if (backend == "cuda" && gpu::device_count() == 0)
    return gpu::no_device_exit("latent_biflow_cuda", " (run with --backend cpu for the same job on the CPU)");
#endif
  // Before anything touches the GPU: with --distributed nccl it makes this rank's device current.
  examples::Distributed distributed(a, argc, argv, "latent_biflow");
#if defined(__CUDACC__)
  if (backend == "cuda") {
    int current = 0;
    gpu::check(cudaGetDevice(&current), "cudaGetDevice");
    cudaDeviceProp p{};
    gpu::check(cudaGetDeviceProperties(&p, current), "cudaGetDeviceProperties");
    if (a.has("tf32") && a.has("bf16")) a.fail("--tf32 and --bf16 exclude each other");
    if (a.has("tf32")) gpu::context().set_math(gpu::MathMode::tf32);
    if (a.has("bf16")) gpu::context().set_math(gpu::MathMode::bf16);
    const std::string dev =
        std::string(p.name) + (a.has("tf32") ? " (TF32)" : a.has("bf16") ? " (bf16 GEMM operands)" : " (FP32)");
    return run<Cuda<float>>(a, dev.c_str(), distributed);
  }
#else
  const std::string backend = a.str("backend", "cpu");
  if (backend == "cuda") a.fail("this build has no CUDA backend: use latent_biflow_cuda (built where nvcc exists)");
#endif
  if (backend != "cpu") a.fail("--backend must be cpu or cuda");
  if (a.has("tf32") || a.has("bf16")) a.fail("--tf32 and --bf16 apply to the Cuda backend only");
  cpu::keep_heap_pages();
  return run<Cpu<float>>(a, "CPU", distributed);
} catch (const std::exception& e) {
  std::fprintf(stderr, "latent_biflow: %s\n", e.what());
  return 1;
}
