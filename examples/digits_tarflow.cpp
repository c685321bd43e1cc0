// digits_tarflow: a class-conditional TARFlow on the real 8x8 handwritten digits (data/digits.csv; first 1500
// rows train, last 297 test). Trains on CPU, reports test bits/dim, checks the exact inverse, samples every class
// with the KV-cached exact inverse (raw, score-denoised, and with classifier-free guidance) into a PNG grid.
//
//   digits_tarflow [--steps 2000] [--report out.json] [--plot samples.png] [--save model.safetensors]
//   digits_tarflow --load model.safetensors --plot samples.png      (sample from a saved model, no training)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <vector>

#include <biflow/biflow.hpp>
#include <biflow/io/safetensors.hpp>

#include "common/args.hpp"
#include "common/distributed.hpp"
#include "common/quality.hpp"
#include "common/png.hpp"
#include "common/png_impl.hpp"

using namespace biflow;
using B = Cpu<float>;

namespace {

constexpr const char* kUsage =
    "usage: digits_tarflow [--data data/digits.csv] [--steps 2000] [--batch 128] [--width 64] [--blocks 8]\n"
    "                      [--patch 2] [--layers 1] [--heads 4] [--lr 2e-3] [--noise 0] [--denoise-sigma S]\n"
    "                      [--label-drop 0.1] [--cfg 1.0] [--ema 0.9995] [--weight-decay 0.1] [--seed 0]\n"
    "                      [--eval-every 0] [--report out.json] [--plot samples.png] [--save model.safetensors]\n"
    "                      [--save-samples DIR]  (exact.npy, exact_no_denoise.npy: 100 x 64 float32; labels.npy)\n"
    "                      [--load model.safetensors] [--checkpoint run.ckpt] [--checkpoint-every 500]\n"
    "                      [--distributed none|mpi]  (mpirun -np N: data parallel, N ranks follow one process)\n"
    "                      [--resume run.ckpt] [--stop-after N]\n"
    "  Class-conditional TARFlow on the 8x8 digits: patch 2 (16 tokens of 4 pixels), --blocks blocks of\n"
    "  --layers causal transformer layers of width --width. Trains with noise augmentation --noise (sigma in\n"
    "  [-1, 1] pixel units; default 0: it lowers bits/dim on clean digits) and label dropout; reports bits/dim on\n"
    "  the dequantised test digits. Denoising uses --denoise-sigma (default: --noise if > 0, else the std of the\n"
    "  uniform dequantisation noise, (2/17)/sqrt(12)).\n"
    "  --load skips training and uses a model written by --save (same architecture flags). --checkpoint writes\n"
    "  the whole training state every --checkpoint-every steps and when training stops (atomically); --resume\n"
    "  continues such a run exactly; --stop-after N ends training after N steps of the --steps schedule (a job\n"
    "  slice), to be resumed later.";

constexpr long kClasses = 10, kTrain = 1500;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Mean NLL (nats per image) of dequantised images under the model, in batches.
double mean_nll(const TarFlow<B>& model, const HostMatrix<float>& x, const HostMatrix<float>& cond) {
  double total = 0;
  for (long r = 0; r < x.rows(); r += 500) {
    const long n = std::min<long>(500, x.rows() - r);
    total += nll(model, from_host<B>(x.middleRows(r, n)), from_host<B>(cond.middleRows(r, n))) * double(n);
  }
  return total / double(x.rows());
}

/// 10 x 10 grid of 8x8 images in [-1, 1] (row = class), each pixel drawn as a scale x scale gray square.
examples::Image grid(const HostMatrix<float>& x, int scale) {
  const int cell = 8 * scale + 2;
  examples::Image img(10 * cell, 10 * cell);
  for (long i = 0; i < x.rows() && i < 100; ++i) {
    const int gy = int(i / 10), gx = int(i % 10);
    for (int p = 0; p < 64; ++p) {
      const auto v = std::uint8_t(255.0f * std::clamp((x(i, p) + 1.0f) / 2.0f, 0.0f, 1.0f));
      for (int dy = 0; dy < scale; ++dy)
        for (int dx = 0; dx < scale; ++dx)
          img.set(gx * cell + 1 + (p % 8) * scale + dx, gy * cell + 1 + (p / 8) * scale + dy, v, v, v);
    }
  }
  return img;
}

}  // namespace

int main(int argc, char** argv) try {
  examples::Args a(argc, argv, kUsage,
                   {"data", "steps", "batch", "width", "blocks", "layers", "heads", "lr", "noise", "label-drop", "cfg",
                    "ema", "seed", "report", "plot", "save", "load", "save-samples", "weight-decay", "eval-every", "patch", "denoise-sigma", "checkpoint",
                    "checkpoint-every", "resume", "stop-after", "distributed"});
  cpu::keep_heap_pages();
  examples::Distributed distributed(a, argc, argv, "digits_tarflow");  // --distributed mpi: MPI up, ranks > 0 quiet
  dist::AnyCommunicator& comm = distributed.comm();
  const data::LabeledImages all = data::load_digits(a.str("data", BIFLOW_DATA_DIR "/digits.csv"));
  if (all.rows() <= kTrain) a.fail("the digits file needs more than 1500 rows (1500 train + test)");
  const data::LabeledImages train = all.slice(0, kTrain), test = all.slice(kTrain, all.rows() - kTrain);
  const long steps = a.integer("steps", 2000), batch = a.integer("batch", 128);
  const double sigma = a.real("noise", 0.0), drop = a.real("label-drop", 0.1), w = a.real("cfg", 1.0);
  const std::uint64_t seed = std::uint64_t(a.integer("seed", 0));
  if (steps < 0 || batch < 1) a.fail("--steps must be >= 0 and --batch >= 1");

  TarFlowConfig cfg;
  cfg.image = {1, 8, 8, a.integer("patch", 2), PatchOrder::channel_major};
  cfg.width = a.integer("width", 64);
  cfg.blocks = a.integer("blocks", 8);
  cfg.layers = a.integer("layers", 1);
  cfg.heads = a.integer("heads", 4);
  cfg.num_classes = kClasses;
  Rng init(seed + 1);
  TarFlow<B> model(cfg, init);
  std::printf("TARFlow on 8x8 digits: %ld blocks x %ld layers, width %ld, %ld heads, %ld tokens of %ld pixels; "
              "%ld parameters; %ld train / %ld test images\n",
              cfg.blocks, cfg.layers, cfg.width, cfg.heads, cfg.image.tokens(), cfg.image.token_dim(),
              long(parameter_count(model)), train.rows(), test.rows());

  const double a_scale = data::dequantize_scale(all.levels);
  // Bits/dim are measured on one fixed dequantisation draw of the images.
  Rng eval(12345);
  const HostMatrix<float> xte = data::dequantize(test.pixels, all.levels, eval),
                          xtr = data::dequantize(train.pixels, all.levels, eval);
  const HostMatrix<float> cte = data::class_condition(test.labels, kClasses, 0.0, eval),
                          ctr = data::class_condition(train.labels, kClasses, 0.0, eval);
  const long eval_every = a.integer("eval-every", 0);
  double train_seconds = 0;
  long skipped = 0;
  if (a.has("load")) {
    io::load_safetensors(a.str("load", ""), model);
    std::printf("loaded %s\n", a.str("load", "").c_str());
  } else {
    TrainOptions o;
    o.lr = a.real("lr", 2e-3);
    o.warmup = std::min<long>(200, std::max<long>(1, steps / 10));
    o.total_steps = std::max<long>(1, steps);
    o.min_lr_fraction = 0.02;
    o.weight_decay = a.real("weight-decay", 0.1);
    o.beta2 = 0.95;
    o.clip = 1.0;
    o.ema_decay = a.real("ema", 0.9995);
    MleTrainer<TarFlow<B>> trainer(model, o);
    Rng rng(seed + 2);
    const std::string ckpt = a.str("checkpoint", "");
    const long ckpt_every = a.integer("checkpoint-every", ckpt.empty() ? 0 : 500);
    const std::map<std::string, std::string> run_config{
        {"width", std::to_string(cfg.width)}, {"blocks", std::to_string(cfg.blocks)},
        {"layers", std::to_string(cfg.layers)}, {"heads", std::to_string(cfg.heads)},
        {"patch", std::to_string(cfg.image.patch)}, {"steps", std::to_string(steps)}, {"batch", std::to_string(batch)}};
    auto save_ckpt = [&] {
      if (!distributed.lead()) return;  // every rank holds the same state: rank 0 writes it
      save_checkpoint(ckpt, model, trainer, {{"data", &rng}}, run_config);
      std::fprintf(stderr, "checkpoint: step %ld -> %s\n", trainer.steps(), ckpt.c_str());
    };
    if (a.has("resume")) {  // continue an interrupted run exactly where its checkpoint left it
      load_checkpoint(a.str("resume", ""), model, trainer, {{"data", &rng}});
      std::printf("resumed %s at step %ld\n", a.str("resume", "").c_str(), trainer.steps());
    }
    // Data parallel: rank 0's weights to every rank, then averaged gradients; every rank draws the same global batch
    // (rows, dequantisation, noise, label drop) from the same Rng and trains on its shard of the rows.
    if (comm.size() > 1) dist::make_data_parallel(trainer, model, comm);
    const dist::Shard shard = dist::shard(batch, comm.rank(), comm.size());
    const auto mine = [&](const Tensor<B>& t) {
      return from_host<B>(HostMatrix<float>(to_host(t).middleRows(shard.begin, shard.size())));
    };
    Progress progress(steps, "train", distributed.progress_stream());
    HostMatrix<float> v(batch, 64);
    std::vector<int> labels(static_cast<std::size_t>(batch));
    const auto t0 = std::chrono::steady_clock::now();
    double avg = 0;
    const long stop = a.has("stop-after") ? std::min(steps, a.integer("stop-after", steps)) : steps;
    for (long s = trainer.steps(); s < stop; ++s) {
      for (long i = 0; i < batch; ++i) {
        const long r = long(rng.below(std::uint64_t(train.rows())));
        v.row(i) = train.pixels.row(r);
        labels[std::size_t(i)] = train.labels[std::size_t(r)];
      }
      Tensor<B> x = from_host<B>(data::dequantize(v, all.levels, rng));
      if (sigma > 0) {
        Tensor<B> eps(batch, 64, uninit);
        fill_normal(eps, rng);
        map(x, fn::Axpby{1.0, sigma}, x, eps);
      }
      Tensor<B> c = from_host<B>(data::class_condition(labels, kClasses, drop, rng));
      if (comm.size() > 1) {
        x = mine(x);
        c = mine(c);
      }
      const StepResult r = trainer.step(x, c);
      if (!r.skipped) avg = avg == 0 ? r.loss : 0.98 * avg + 0.02 * r.loss;
      progress.update(s + 1, bits_per_dim(avg, 64, a_scale), "(bits/dim of noisy batches)");
      if (eval_every > 0 && (s + 1) % eval_every == 0) {
        if (trainer.has_ema()) trainer.ema().swap(model);
        std::printf("step %ld: test bits/dim %.4f\n", s + 1, bits_per_dim(mean_nll(model, xte, cte), 64, a_scale));
        std::fflush(stdout);
        if (trainer.has_ema()) trainer.ema().swap(model);
      }
      if (!ckpt.empty() && ckpt_every > 0 && ((s + 1) % ckpt_every == 0 || s + 1 == stop)) save_ckpt();
    }
    train_seconds = seconds_since(t0);
    skipped = trainer.skipped_steps();
    if (trainer.has_ema()) trainer.ema().swap(model);  // evaluate and sample with the averaged weights
    if (distributed.lead() && a.has("save")) {
      io::save_safetensors(a.str("save", ""), model,
                           {{"model", "TarFlow"}, {"width", std::to_string(cfg.width)},
                            {"blocks", std::to_string(cfg.blocks)}, {"layers", std::to_string(cfg.layers)},
                            {"heads", std::to_string(cfg.heads)}, {"patch", std::to_string(cfg.image.patch)},
                            {"num_classes", "10"}});
      std::printf("saved %s\n", a.str("save", "").c_str());
    }
  }

  // Bits/dim of the dequantised digits, given the true class and unconditionally.
  const double test_bpd = bits_per_dim(mean_nll(model, xte, cte), 64, a_scale);
  const double test_bpd_uncond =
      bits_per_dim(mean_nll(model, xte, data::null_condition(test.rows(), kClasses)), 64, a_scale);
  const double train_bpd = bits_per_dim(mean_nll(model, xtr, ctr), 64, a_scale);

  // Exact inverse on the test images.
  const Tensor<B> zte = model.forward(from_host<B>(xte), from_host<B>(cte), logdet::none).y;  // inference pass
  const double inv_err =
      double((to_host(model.inverse(zte, from_host<B>(cte)).y) - xte).cwiseAbs().maxCoeff());
  std::printf("test bits/dim %.4f (given the class; %.4f unconditional), train %.4f; exact inverse max error %.2e\n",
              test_bpd, test_bpd_uncond, train_bpd, inv_err);
  // Baselines on the same split: independent per-pixel categoricals over the grey levels (Laplace 0.1).
  const double cat_cond = categorical_bits_per_dim(train.pixels, train.labels, test.pixels, test.labels, all.levels, true),
               cat_uncond =
                   categorical_bits_per_dim(train.pixels, train.labels, test.pixels, test.labels, all.levels, false);
  std::printf("baseline, per-pixel categorical: %.4f bits/dim given the class, %.4f unconditional\n", cat_cond,
              cat_uncond);

  // 10 samples per class from the same noise: exact inverse, + score denoising, and with guidance.
  std::vector<int> sl(100, 0);
  for (int i = 0; i < 100; ++i) sl[std::size_t(i)] = i / 10;
  const Tensor<B> scond = from_host<B>(data::class_condition(sl, kClasses, 0.0, eval));
  Rng srng(seed + 3);
  const Tensor<B> z = StandardNormal::sample<B>(100, 64, srng);
  auto t1 = std::chrono::steady_clock::now();
  const Tensor<B> raw = model.inverse(z, scond, logdet::none).y;
  const double exact_s = seconds_since(t1) / 100.0;
  const double sd = a.real("denoise-sigma", sigma > 0 ? sigma : a_scale / std::sqrt(12.0));
  t1 = std::chrono::steady_clock::now();
  const Tensor<B> den = denoise(model, raw, sd, scond);
  const double denoise_s = seconds_since(t1) / 100.0;
  const Tensor<B> guided_raw = model.inverse(z, scond, Guidance<B>{w, false, {}}, logdet::none).y;
  const Tensor<B> guided = denoise(model, guided_raw, sd, scond);
  std::printf("sampling (batch 100, %d thread%s): exact inverse %.3f ms/image, score denoising %.3f ms/image\n",
              cpu::threads(), cpu::threads() > 1 ? "s" : "", 1e3 * exact_s, 1e3 * denoise_s);
  if (distributed.lead() && a.has("save-samples"))  // 10 per class, rows in label order: exact inverse + score denoising (as plotted)
    examples::save_samples(a.str("save-samples", ""),
                           {{"exact", to_host(den).cwiseMax(-1.0f).cwiseMin(1.0f)},
                            {"exact_no_denoise", to_host(raw).cwiseMax(-1.0f).cwiseMin(1.0f)}},
                           sl);

  if (distributed.lead() && a.has("plot")) {
    const examples::Image g1 = grid(to_host(raw), 3), g2 = grid(to_host(den), 3), g3 = grid(to_host(guided), 3);
    examples::Image img(3 * g1.w + 40, g1.h);
    img.paste(g1, 0, 0);
    img.paste(g2, g1.w + 20, 0);
    img.paste(g3, 2 * g1.w + 40, 0);
    examples::write_png(a.str("plot", ""), img);
    std::printf("wrote %s (rows: classes 0-9; left: exact inverse, middle: + score denoising, right: guidance w=%g "
                "+ denoising; same noise)\n",
                a.str("plot", "").c_str(), w);
  }
  if (distributed.lead() && a.has("report")) {
    std::ofstream f(a.str("report", ""));
    f.precision(8);
    f << "{\n  \"test_bpd\": " << test_bpd << ",\n  \"test_bpd_unconditional\": " << test_bpd_uncond
      << ",\n  \"train_bpd\": " << train_bpd << ",\n  \"categorical_bpd_conditional\": " << cat_cond
      << ",\n  \"categorical_bpd_unconditional\": " << cat_uncond << ",\n  \"inverse_max_abs_error\": " << inv_err
      << ",\n  \"sample_seconds_per_image_exact\": " << exact_s << ",\n  \"denoise_seconds_per_image\": " << denoise_s
      << ",\n  \"params\": " << parameter_count(model) << ",\n  \"steps\": " << (a.has("load") ? 0 : steps)
      << ",\n  \"skipped_steps\": " << skipped << ",\n  \"batch\": " << batch << ",\n  \"train_seconds\": "
      << train_seconds << ",\n  \"threads\": " << cpu::threads() << ",\n  \"width\": " << cfg.width
      << ",\n  \"blocks\": " << cfg.blocks
      << ",\n  \"layers\": " << cfg.layers << ",\n  \"noise\": " << sigma << ",\n  \"denoise_sigma\": " << sd << ",\n  \"cfg\": " << w << ",\n  \"ranks\": " << comm.size() << "\n}\n";
    if (!f) throw io_error("cannot write report '" + a.str("report", "") + "'");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "digits_tarflow: %s\n", e.what());
  return 1;
}
