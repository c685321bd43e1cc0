// toy_density: fit a RealNVP or MAF flow to a 2-D toy set or any numeric CSV by maximum likelihood,
// report test NLL (nats/sample, original units) against a full-covariance Gaussian, and plot the
// learned density beside the data and the flow's samples.
#include <biflow/biflow.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/args.hpp"
#include "common/png_impl.hpp"
#include "common/distributed.hpp"

using namespace biflow;
using B = Cpu<float>;
using RealNVP = Repeat<dynamic, AffineCoupling<B, MLP<B>>>;
using Maf = Repeat<dynamic, Sequential<MaskedAutoregressive<B>, Permutation<B>>>;
using Iaf = Repeat<dynamic, Sequential<InverseAutoregressive<B>, Permutation<B>>>;
using NsfCoupling = Repeat<dynamic, SplineCoupling<B, MLP<B>>>;
using NsfAr = Repeat<dynamic, Sequential<SplineAutoregressive<B>, Permutation<B>>>;
using Nice = Sequential<Repeat<dynamic, AdditiveCoupling<B, MLP<B>>>, DiagonalScaling<B>>;
using ResFlow = Repeat<dynamic, Sequential<Residual<B>, ActNorm<B>>>;

static const char* kUsage =
    "usage: toy_density [--data moons|8gaussians|checkerboard|rings|FILE.csv] [--test FILE.csv]\n"
    "                   [--model realnvp|maf|iaf|nice|nsf-coupling|nsf-ar|residual] [--bins 8] [--layers 8] [--hidden 64] [--steps 3000] [--batch 256]\n"
    "                   [--lr 1e-3] [--seed 0] [--report out.json] [--plot out.png] [--reverse-steps 0]\n"
    "                   [--save F.safetensors] [--load F.safetensors] [--checkpoint run.ckpt] [--dump-data DIR]\n"
    "                   [--checkpoint-every 500] [--resume run.ckpt] [--stop-after N] [--distributed none|mpi]\n"
    "Built-in sets: 10000 training and 5000 test points (test seed fixed). CSV without --test: last 20% is test.\n"
    "--reverse-steps N > 0: then freeze the flow and train a learned inverse G (BiFlow: residual-MLP stages, hidden\n"
    "alignment) for N steps; report G(F(x)) ~ x on test, the flow's NLL of G's samples vs of exact samples, the\n"
    "energy distance of both sample sets to the test set (beside a copy of training rows and a Gaussian fit), and the\n"
    "time per call at batch 1 and 4096 both ways.\n"
    "--save writes the trained flow's weights (safetensors); --load starts from them (same --model/--layers/--hidden;\n"
    "with --steps 0 it only evaluates). --checkpoint writes parameters, optimizer, EMA, step and data RNG every\n"
    "--checkpoint-every steps (atomically); --resume continues such a run exactly where it stopped; --stop-after N\n"
    "ends training after step N (as if interrupted). --dump-data DIR writes the train/test rows as CSV and exits.\n"
    "--distributed mpi (under mpirun -np N): data-parallel training; every rank takes batch/N rows of the same global\n"
    "batch and the gradients are averaged, so N ranks follow the one-process run at the same --batch; rank 0\n"
    "prints, plots, saves and reports. --kill-rank-after N (fault injection, for the tests): the last rank kills\n"
    "itself after step N.";

namespace {

Tensor<B> to_tensor(const HostMatrix<double>& m) { return from_host<B>(m.cast<float>()); }

/// Mean NLL over all rows, evaluated in chunks.
template <class F>
double mean_nll(const F& flow, const HostMatrix<double>& u) {
  double total = 0;
  for (long r = 0; r < u.rows(); r += 4096) {
    const long n = std::min<long>(4096, u.rows() - r);
    total += nll(flow, to_tensor(u.middleRows(r, n))) * double(n);
  }
  return total / double(u.rows());
}

template <class F>
int run(F& flow, const std::string& model, const examples::Args& a, const HostMatrix<double>& train,
        const HostMatrix<double>& test, const std::string& data_name, examples::Distributed& distributed) {
  dist::AnyCommunicator& comm = distributed.comm();
  const long steps = a.integer("steps", 3000), batch = a.integer("batch", 256);
  const auto stdz = data::Standardizer::fit(train);
  const HostMatrix<double> utrain = stdz.transform(train), utest = stdz.transform(test);
  const double gauss = data::gaussian_nll(train, test);

  TrainOptions o;
  o.lr = a.real("lr", 1e-3);
  o.total_steps = std::max<long>(1, steps);
  o.warmup = std::max<long>(1, std::min<long>(100, steps / 10));
  o.clip = 5.0;
  MleTrainer<F> trainer(flow, o);
  Rng rng(std::uint64_t(a.integer("seed", 0)) * 7919 + 17);
  if (a.has("load")) {
    io::load_safetensors(a.str("load", ""), flow);
    std::printf("loaded %s\n", a.str("load", "").c_str());
  }
  const std::string ckpt = a.str("checkpoint", "");
  const long ckpt_every = a.integer("checkpoint-every", ckpt.empty() ? 0 : 500);
  const std::map<std::string, std::string> run_config{{"model", model}, {"data", data_name},
                                                      {"layers", std::to_string(a.integer("layers", 8))},
                                                      {"hidden", std::to_string(a.integer("hidden", 64))},
                                                      {"steps", std::to_string(steps)}};
  if (a.has("resume")) {  // continue an interrupted run exactly where its checkpoint left it
    load_checkpoint(a.str("resume", ""), flow, trainer, {{"data", &rng}});
    std::printf("resumed %s at step %ld\n", a.str("resume", "").c_str(), trainer.steps());
  }
  // Data parallel (--distributed mpi): rank 0's weights to every rank, then each step averages the gradients; every
  // rank draws the same global batch from the same data Rng and keeps its shard of it.
  const bool lead = comm.rank() == 0;
  if (comm.size() > 1) dist::make_data_parallel(trainer, flow, comm);
  const dist::Shard shard = dist::shard(batch, comm.rank(), comm.size());
  FILE* const progress_out = distributed.progress_stream();  // progress lines from rank 0 only
  if (comm.size() > 1)
    std::printf("data parallel over %d ranks: %ld of each global batch of %ld rows per rank\n", comm.size(),
                shard.size(), batch);
  std::printf("toy_density: %s on %s (%ld train / %ld test rows, %ld features), %ld parameters\n", model.c_str(),
              data_name.c_str(), long(train.rows()), long(test.rows()), long(train.cols()), parameter_count(flow));
  Progress prog(steps, "train", progress_out);
  HostMatrix<double> xb(shard.size(), train.cols());
  std::vector<double> step_ms;  // per iteration (batch + step), as the PyTorch reference measures it
  step_ms.reserve(std::size_t(steps));
  double loss = 0;
  const long first = trainer.steps();
  const long stop = a.has("stop-after") ? std::min(steps, a.integer("stop-after", steps)) : steps;
  const long kill_at = a.integer("kill-rank-after", 0);
  for (long s = first; s < stop; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < batch; ++i) {
      const long row = long(rng.below(std::uint64_t(utrain.rows())));
      if (i >= shard.begin && i < shard.end) xb.row(i - shard.begin) = utrain.row(row);
    }
    const StepResult r = trainer.step(to_tensor(xb));
    step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    // Shown in original data units (nats/sample), smoothed.
    const double l = r.loss - stdz.log_abs_det();
    if (!r.skipped) loss = loss == 0 ? l : 0.98 * loss + 0.02 * l;
    prog.update(s + 1, loss);
    if (lead && !ckpt.empty() && ckpt_every > 0 && ((s + 1) % ckpt_every == 0 || s + 1 == stop))
      save_checkpoint(ckpt, flow, trainer, {{"data", &rng}}, run_config);
    // Fault injection for the kill test: the last rank dies (SIGKILL: no cleanup, no goodbye) after this step.
    if (kill_at == s + 1 && comm.size() > 1 && comm.rank() == comm.size() - 1) std::raise(SIGKILL);
  }
  if (lead && a.has("save")) {
    io::save_safetensors(a.str("save", ""), flow, run_config);
    std::printf("saved %s\n", a.str("save", "").c_str());
  }
  const double seconds = prog.seconds();
  const long run_steps = std::max<long>(0, trainer.steps() - first);
  // Median step time over the steady state (first 10% dropped as warm-up).
  std::vector<double> steady(step_ms.begin() + long(step_ms.size() / 10), step_ms.end());
  std::nth_element(steady.begin(), steady.begin() + long(steady.size() / 2), steady.end());
  const double median_ms = steady.empty() ? 0.0 : steady[steady.size() / 2];
  // Densities in original units: log p_x = log p_u + log|det ∂u/∂x|.
  const double test_nll = mean_nll(flow, utest) - stdz.log_abs_det();
  const double train_nll = mean_nll(flow, utrain.topRows(std::min<long>(utrain.rows(), 10000))) - stdz.log_abs_det();
  std::printf("test NLL %.4f nats (full-covariance Gaussian: %.4f)   train NLL %.4f   %.1f steps/s, %.1f s%s\n",
              test_nll, gauss, train_nll, run_steps > 0 ? double(run_steps) / seconds : 0.0, seconds,
              trainer.skipped_steps() ? (", " + std::to_string(trainer.skipped_steps()) + " steps skipped").c_str() : "");

  double integral = std::nan("");
  if (lead && train.cols() == 2 && a.has("plot")) {
    const int n = 200;
    HostMatrix<double> all(train.rows() + test.rows(), 2);
    all << train, test;
    const Eigen::RowVector2d lo = all.colwise().minCoeff(), hi = all.colwise().maxCoeff();
    const Eigen::RowVector2d pad = 0.15 * (hi - lo), l = lo - pad, h = hi + pad;
    HostMatrix<double> grid(n * n, 2);
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x)
        grid.row(y * n + x) << l(0) + (x + 0.5) * (h(0) - l(0)) / n, h(1) - (y + 0.5) * (h(1) - l(1)) / n;
    const HostMatrix<double> lp = to_host(log_prob(flow, to_tensor(stdz.transform(grid)))).template cast<double>();
    HostMatrix<double> dens(n, n);
    for (int i = 0; i < n * n; ++i) dens(i / n, i % n) = std::exp(lp(i, 0) + stdz.log_abs_det());
    integral = dens.sum() * (h(0) - l(0)) * (h(1) - l(1)) / (n * n);
    Rng srng(99);
    const HostMatrix<double> samp = stdz.inverse(to_host(sample(flow, test.rows(), srng)).template cast<double>());
    examples::Image img(3 * n + 20, n);
    img.paste(examples::heatmap(examples::histogram2d(test, l(0), h(0), l(1), h(1), n)), 0, 0);
    img.paste(examples::heatmap(dens), n + 10, 0);
    img.paste(examples::heatmap(examples::histogram2d(samp, l(0), h(0), l(1), h(1), n)), 2 * n + 20, 0);
    examples::write_png(a.str("plot", ""), img);
    std::printf("wrote %s (left: test data, middle: learned density, right: %ld samples); density integrates to %.4f "
                "on the plotted grid\n", a.str("plot", "").c_str(), long(test.rows()), integral);
  }
  // Optional: a learned inverse of the frozen flow (one pass instead of the exact inverse's layer-by-layer and,
  // for MAF, feature-by-feature passes).
  const long rsteps = a.integer("reverse-steps", 0);
  double recon = std::nan(""), nll_learned = std::nan(""), nll_exact = std::nan(""), t_exact = 0, t_learned = 0;
  double ed_exact = std::nan(""), ed_learned = std::nan(""), ed_copy = std::nan(""), ed_gauss = std::nan("");
  double ms1_exact = 0, ms1_learned = 0, ms4096_exact = 0, ms4096_learned = 0;
  if (rsteps > 0) {
    ReverseConfig rc;
    rc.tokens = 1;
    rc.token_dim = train.cols();
    rc.width = a.integer("hidden", 64);
    rc.stages = std::min<long>(4, a.integer("layers", 8));
    rc.layers = 2;
    Rng grng(std::uint64_t(a.integer("seed", 0)) + 101);
    ReverseModel<B, MlpStage> g(rc, grng);
    HiddenAlignment<B> heads(rc, grng);
    ReverseTrainOptions ro;
    ro.optim.lr = 2e-3;
    ro.optim.total_steps = rsteps;
    ro.optim.warmup = std::min<long>(100, rsteps / 10);
    ro.optim.ema_decay = 0.999;
    ReverseTrainer<F, ReverseModel<B, MlpStage>, HiddenAlignment<B>> rt(flow, g, heads, ro);
    if (comm.size() > 1) {  // G and its heads data-parallel too
      dist::broadcast_state(g, comm);
      dist::broadcast_state(heads, comm);
      dist::reduce_gradients(rt.optimization(), comm);
    }
    // The step's noise is drawn for the whole global batch and this rank's rows kept: every rank's Rng stays in step.
    const BatchRows rows{shard.begin, comm.size() > 1 ? batch : 0};
    Progress rp(rsteps, "train G", progress_out);
    for (long s = 0; s < rsteps; ++s) {
      for (long i = 0; i < batch; ++i) {
        const long row = long(rng.below(std::uint64_t(utrain.rows())));
        if (i >= shard.begin && i < shard.end) xb.row(i - shard.begin) = utrain.row(row);
      }
      rp.update(s + 1, rt.step(to_tensor(xb), {}, rng, rows).loss);
    }
    if (rt.has_ema()) rt.ema().swap(g);
    const BiFlow bf{flow, g};
    const Tensor<B> xt = to_tensor(utest);
    recon = double((to_host(bf.reconstruct(xt)) - utest.cast<float>()).squaredNorm()) / double(utest.size());
    Rng zr(4242);
    const Tensor<B> z = StandardNormal::sample<B>(utest.rows(), utest.cols(), zr);
    auto t0 = std::chrono::steady_clock::now();
    const Tensor<B> xe = flow.inverse(z, {}, logdet::none).y;
    t_exact = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t0 = std::chrono::steady_clock::now();
    const Tensor<B> xl = bf.generate(z);
    t_learned = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nll_exact = nll(flow, xe) - stdz.log_abs_det();
    nll_learned = nll(flow, xl) - stdz.log_abs_det();
    // Sample quality in original units: energy distance to the test set (2000 rows each), with the two rows that
    // frame it: a copy of training rows (as good as data gets) and a full-covariance Gaussian fit (known bad).
    const long ne = std::min<long>(2000, std::min<long>(test.rows(), train.rows()));
    const HostMatrix<double> tref = test.topRows(ne);
    const auto orig = [&](const Tensor<B>& t) {
      return HostMatrix<double>(stdz.inverse(to_host(t).template cast<double>()).topRows(ne));
    };
    ed_exact = energy_distance(orig(xe), tref);
    ed_learned = energy_distance(orig(xl), tref);
    ed_copy = energy_distance(train.bottomRows(ne), tref);
    {
      const Eigen::RowVectorXd mu = train.colwise().mean();
      const Eigen::MatrixXd c = (train.rowwise() - mu).transpose() * (train.rowwise() - mu) / double(train.rows() - 1);
      const Eigen::MatrixXd l = Eigen::LLT<Eigen::MatrixXd>(c).matrixL();
      Rng gr(77);
      HostMatrix<double> g(ne, train.cols());
      for (long i = 0; i < g.size(); ++i) g.data()[i] = gr.normal();
      ed_gauss = energy_distance(HostMatrix<double>((g * l.transpose()).rowwise() + mu), tref);
    }
    // Speed at batch 1 (median of 200 calls) and 4096 (median of 5).
    const auto median_ms = [&](long batch, int reps, auto&& fn) {
      Rng br(5);
      const Tensor<B> zb = StandardNormal::sample<B>(batch, utest.cols(), br);
      std::vector<double> v;
      for (int i = 0; i < reps; ++i) {
        const auto t = std::chrono::steady_clock::now();
        fn(zb);
        v.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
      }
      std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
      return v[v.size() / 2];
    };
    const auto exact_fn = [&](const Tensor<B>& zb) { return flow.inverse(zb, {}, logdet::none).y; };
    const auto learned_fn = [&](const Tensor<B>& zb) { return bf.generate(zb); };
    ms1_exact = median_ms(1, 200, exact_fn);
    ms1_learned = median_ms(1, 200, learned_fn);
    ms4096_exact = median_ms(4096, 5, exact_fn);
    ms4096_learned = median_ms(4096, 5, learned_fn);
    std::printf("learned inverse G (%ld parameters, %ld steps): test reconstruction MSE %.2e (standardised units); "
                "flow NLL of samples: learned %.4f, exact %.4f; %ld samples in %.2f ms (learned) vs %.2f ms (exact)\n",
                long(parameter_count(g)), rsteps, recon, nll_learned, nll_exact, long(utest.rows()), 1e3 * t_learned,
                1e3 * t_exact);
    std::printf("energy distance to %ld test rows: exact samples %.4f, learned %.4f (copy of training rows %.4f, "
                "Gaussian fit %.4f); ms per call, exact vs learned: batch 1 %.3f vs %.3f (%.1fx), batch 4096 %.2f vs "
                "%.2f (%.1fx)\n", long(std::min<long>(2000, test.rows())), ed_exact, ed_learned, ed_copy, ed_gauss,
                ms1_exact, ms1_learned, ms1_exact / ms1_learned, ms4096_exact, ms4096_learned,
                ms4096_exact / ms4096_learned);
  }
  if (lead && a.has("report")) {
    std::ofstream f(a.str("report", ""));
    f.precision(8);
    f << "{\n  \"data\": \"" << data_name << "\",\n  \"model\": \"" << model << "\",\n  \"layers\": "
      << a.integer("layers", 8) << ",\n  \"hidden\": " << a.integer("hidden", 64) << ",\n  \"batch\": " << batch
      << ",\n  \"seed\": " << a.integer("seed", 0) << ",\n  \"params\": " << parameter_count(flow)
      << ",\n  \"steps\": " << steps << ",\n  \"skipped_steps\": " << trainer.skipped_steps()
      << ",\n  \"seconds\": " << seconds << ",\n  \"steps_per_second\": " << (run_steps > 0 ? double(run_steps) / seconds : 0.0)
      << ",\n  \"median_step_ms\": " << median_ms
      << ",\n  \"train_nll\": " << train_nll << ",\n  \"test_nll\": " << test_nll
      << ",\n  \"gaussian_test_nll\": " << gauss << ",\n  \"ranks\": " << comm.size()
      << ",\n  \"gemm_engine\": \"" << cpu::gemm_engine() << "\"";
    if (std::isfinite(integral)) f << ",\n  \"density_integral\": " << integral;
    if (rsteps > 0)
      f << ",\n  \"reverse_recon_mse\": " << recon << ",\n  \"reverse_sample_nll_learned\": " << nll_learned
        << ",\n  \"reverse_sample_nll_exact\": " << nll_exact << ",\n  \"reverse_seconds_learned\": " << t_learned
        << ",\n  \"reverse_seconds_exact\": " << t_exact << ",\n  \"energy_distance_exact\": " << ed_exact
        << ",\n  \"energy_distance_learned\": " << ed_learned << ",\n  \"energy_distance_train_copy\": " << ed_copy
        << ",\n  \"energy_distance_gaussian\": " << ed_gauss << ",\n  \"ms_batch1_exact\": " << ms1_exact
        << ",\n  \"ms_batch1_learned\": " << ms1_learned << ",\n  \"ms_batch4096_exact\": " << ms4096_exact
        << ",\n  \"ms_batch4096_learned\": " << ms4096_learned;
    f << "\n}\n";
    if (!f) throw io_error("cannot write report '" + a.str("report", "") + "'");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  examples::Args a(argc, argv, kUsage,
                   {"data", "test", "model", "bins", "layers", "hidden", "steps", "batch", "lr", "seed", "report", "plot",
                    "reverse-steps", "save", "load", "checkpoint", "checkpoint-every", "resume", "stop-after",
                    "dump-data", "distributed", "kill-rank-after"});
  cpu::keep_heap_pages();  // see backend/cpu/allocator.hpp: avoids page-faulting tensors back in every step
  examples::Distributed distributed(a, argc, argv, "toy_density");  // --distributed mpi: MPI up, ranks > 0 quiet
  const std::string data_name = a.str("data", "moons"), model = a.str("model", "realnvp");
  const long layers = a.integer("layers", 8), hidden = a.integer("hidden", 64);
  if (layers < 1 || hidden < 1) a.fail("--layers and --hidden must be positive");
  HostMatrix<double> train, test;
  if (data_name.size() > 4 && data_name.substr(data_name.size() - 4) == ".csv") {
    const HostMatrix<double> all = data::load_csv(data_name);
    if (a.has("test")) {
      train = all;
      test = data::load_csv(a.str("test", ""));
      require_dim("toy_density --test", "columns (as in --data)", train.cols(), test.cols());
    } else {
      const long nt = std::max<long>(1, all.rows() / 5);
      if (all.rows() - nt < 2) throw usage_error("toy_density: the CSV needs at least 3 rows to hold out a test part");
      train = all.topRows(all.rows() - nt);
      test = all.bottomRows(nt);
    }
  } else {
    Rng tr(std::uint64_t(a.integer("seed", 0))), te(0xC0FFEE);
    train = data::toy(data_name, 10000, tr);
    test = data::toy(data_name, 5000, te);
  }
  if (a.has("dump-data")) {  // the exact train/test rows, for a peer library to train on (benchmarks/reference)
    const std::string dir = a.str("dump-data", "");
    data::save_csv(dir + "/train.csv", train);
    data::save_csv(dir + "/test.csv", test);
    std::printf("wrote %s/train.csv (%ld rows) and %s/test.csv (%ld rows)\n", dir.c_str(), long(train.rows()),
                dir.c_str(), long(test.rows()));
    return 0;
  }
  const long d = train.cols();
  Rng init(std::uint64_t(a.integer("seed", 0)) + 1);
  if (model == "realnvp") {
    RealNVP flow(std::size_t(layers), [&](std::size_t i) {
      return make_coupling<B>(masks::half(d, int(i % 2)), {hidden, hidden}, init);
    });
    return run(flow, model, a, train, test, data_name, distributed);
  }
  if (model == "maf") {
    Maf flow(std::size_t(layers), [&](std::size_t) {
      return Sequential<MaskedAutoregressive<B>, Permutation<B>>(
          MaskedAutoregressive<B>(d, {hidden, hidden}, init), Permutation<B>::reverse(d));
    });
    return run(flow, model, a, train, test, data_name, distributed);
  }
  if (model == "iaf") {  // density (training, test NLL) takes D passes per layer; sampling one
    Iaf flow(std::size_t(layers), [&](std::size_t) {
      return Sequential<InverseAutoregressive<B>, Permutation<B>>(InverseAutoregressive<B>(d, {hidden, hidden}, init),
                                                                  Permutation<B>::reverse(d));
    });
    return run(flow, model, a, train, test, data_name, distributed);
  }
  if (model == "nice") {  // additive couplings (volume-preserving) and the final diagonal scaling
    Nice flow(Repeat<dynamic, AdditiveCoupling<B, MLP<B>>>(std::size_t(layers), [&](std::size_t i) {
                return make_additive_coupling<B>(masks::half(d, int(i % 2)), {hidden, hidden}, init);
              }),
              DiagonalScaling<B>(d));
    return run(flow, model, a, train, test, data_name, distributed);
  }
  SplineShape spline;  // neural spline flows: K bins on [-5, 5] (zuko's bound), linear tails
  spline.bins = a.integer("bins", 8);
  if (model == "nsf-coupling") {
    NsfCoupling flow(std::size_t(layers), [&](std::size_t i) {
      return make_spline_coupling<B>(masks::half(d, int(i % 2)), {hidden, hidden}, init, spline);
    });
    return run(flow, model, a, train, test, data_name, distributed);
  }
  if (model == "nsf-ar") {  // density one pass; sampling D passes per layer
    NsfAr flow(std::size_t(layers), [&](std::size_t) {
      return Sequential<SplineAutoregressive<B>, Permutation<B>>(
          SplineAutoregressive<B>(d, {hidden, hidden}, init, spline), Permutation<B>::reverse(d));
    });
    return run(flow, model, a, train, test, data_name, distributed);
  }
  if (model == "residual") {  // i-ResNet blocks (Lip(g) <= 0.9) + ActNorm; exact log-det (2-D), fixed-point sampling
    residual::Options ro;
    ro.hidden = {hidden, hidden};
    ResFlow flow(std::size_t(layers), [&](std::size_t) {
      return Sequential<Residual<B>, ActNorm<B>>(Residual<B>(d, init, ro), ActNorm<B>(d));
    });
    return run(flow, model, a, train, test, data_name, distributed);
  }
  a.fail("--model must be realnvp, maf, iaf, nice, nsf-coupling, nsf-ar or residual, got '" + model + "'");
} catch (const std::exception& e) {
  std::fprintf(stderr, "toy_density: %s\n", e.what());
  return 1;
}
