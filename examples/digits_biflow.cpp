// digits_biflow: BiFlow on the real 8x8 digits. Trains (or loads) a class-conditional TARFlow F, freezes it,
// trains a learned reverse model G (one bidirectional-transformer pass from noise to digits) with a chosen
// strategy, distance and denoising mode, and compares G with F's exact inverse (+ score denoising): sample
// quality (class accuracy and digits-FD under a small classifier trained here), reconstruction G(F(x)) ≈ x and
// sampling speed at the same batch.
//
//   digits_biflow [--flow-steps 2000] [--steps 2000] [--strategy align] [--distance mse] [--denoise learned]
//                 [--report out.json] [--plot samples.png]
//   digits_biflow --load-flow flow.safetensors ...        (reuse a TARFlow written by --save-flow)
//   digits_biflow --save-samples DIR ...                  (exact.npy, learned.npy, labels.npy for your own evaluator)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
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
using Rev = ReverseModel<B>;

namespace {

constexpr const char* kUsage =
    "usage: digits_biflow [--data data/digits.csv] [--seed 0] [--report out.json] [--plot samples.png]\n"
    "                     [--save-samples DIR] [--replicates 100]\n"
    "  forward model F (TARFlow):  [--flow-steps 2000] [--blocks 8] [--flow-layers 1] [--width 64] [--noise 0.05]\n"
    "                              [--load-flow F.safetensors] [--save-flow F.safetensors]\n"
    "                              [--load-g G.safetensors] [--save-g G.safetensors]\n"
    "  reverse model G:            [--steps 2000] [--batch 128] [--lr 2e-3] [--g-width 64] [--stages 2]\n"
    "                              [--g-layers 1] [--strategy naive|distill|align] [--distance mse|l1|huber|cosine|\n"
    "                              feature|mse+feature] [--feature-weight 0.1] [--adaptive P] [--denoise learned|score|none]\n"
    "                              [--state-clip 0] [--no-head-norm] [--cfg 0] [--cfg-mode train|inference]\n"
    "                              [--cfg-max 3] [--ema 0.999] [--g-seed SEED]\n"
    "                              [--sample-pool 0] [--pool-fraction 0.5]\n"
    "                              [--checkpoint G.ckpt] [--checkpoint-every 500] [--resume G.ckpt] [--stop-after N]\n"
    "  G's training can be checkpointed (G, its heads, AdamW, EMA, counters, the batch stream; every\n"
    "  --checkpoint-every steps and when training stops), stopped after N steps of the --steps schedule, and resumed\n"
    "  exactly with --resume (same F: use --load-flow, or the same F flags and seed).\n"
    "  F: --blocks causal TARFlow blocks trained with noise augmentation --noise (sigma, pixel units in [-1, 1]).\n"
    "  G: --stages bidirectional transformer stages of --g-layers layers, trained with F frozen by\n"
    "     naive distillation, hidden distillation (G's stage states forced into input space) or hidden alignment\n"
    "     (learnable projection heads). --denoise learned adds a stage to clean data; score applies F's score\n"
    "     denoising to G's output; none leaves samples noisy. --state-clip c clips F's intermediate states to\n"
    "     [-c, c] (norm control); head normalisation is on unless --no-head-norm. --distance applies to G's output\n"
    "     (feature = penultimate features of a second classifier, not the evaluator); --adaptive P reweights by\n"
    "     1/(D + 1e-3)^P. --cfg w samples with classifier-free guidance w: F guides every decoding step, G either\n"
    "     takes w as an input (--cfg-mode train, trained on w ~ U(0, --cfg-max)) or runs twice (inference).\n"
    "     --sample-pool N mixes N of F's own samples (exact inverse + score denoising) into G's batches\n"
    "     (--pool-fraction of each batch) as extra data, so G also trains where z ~ N(0, I) lands.\n"
    "  Evaluation: 1000 samples (100 per class) from N(0, I), clamped to [-1, 1], for G and for F's exact inverse\n"
    "  (+ score denoising), judged against the 297 held-out test digits at equal n: each of --replicates random\n"
    "  splits takes half of the test digits as reference and 148 rows of every set; Frechet distance and KID of\n"
    "  an evaluation classifier's features, k-NN precision/recall, novelty (nearest-training-digit distance\n"
    "  relative to the held-out digits': ~1 novel, ~0 copies) and class accuracy. Reference rows: copied\n"
    "  training digits, the other half of the test digits, class mean + noise. --save-samples DIR writes\n"
    "  exact.npy and learned.npy (float32 1000 x 64, clamped, same noise, rows in label order) and labels.npy\n"
    "  (int64). Speed at batch 100.";

constexpr long kClasses = 10, kTrain = 1500, kPerClass = 100, kBatchEval = 100;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

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

HostMatrix<float> clamp_pixels(HostMatrix<float> x) { return x.cwiseMax(-1.0f).cwiseMin(1.0f); }

}  // namespace

int main(int argc, char** argv) try {
  examples::Args a(argc, argv, kUsage,
                   {"data", "seed", "report", "plot", "flow-steps", "blocks", "flow-layers", "width", "noise",
                    "load-flow", "save-flow", "load-g", "save-g", "steps", "batch", "lr", "g-width", "stages", "g-layers", "strategy",
                    "distance", "feature-weight", "adaptive", "denoise", "state-clip", "cfg", "cfg-mode", "cfg-max",
                    "ema", "heads", "g-seed", "sample-pool", "pool-fraction", "save-samples", "replicates",
                    "checkpoint", "checkpoint-every", "resume", "stop-after", "distributed"},
                   {"no-head-norm"});
  cpu::keep_heap_pages();
  examples::Distributed distributed(a, argc, argv, "digits_biflow");  // --distributed mpi: MPI up, ranks > 0 quiet
  dist::AnyCommunicator& comm = distributed.comm();
  const data::LabeledImages all = data::load_digits(a.str("data", BIFLOW_DATA_DIR "/digits.csv"));
  if (all.rows() <= kTrain) a.fail("the digits file needs more than 1500 rows (1500 train + test)");
  const data::LabeledImages train = all.slice(0, kTrain), test = all.slice(kTrain, all.rows() - kTrain);
  const std::uint64_t seed = std::uint64_t(a.integer("seed", 0));
  // G's own seed (initialisation, batches, noise), so G's training noise can be measured against one frozen F.
  const std::uint64_t gseed = std::uint64_t(a.integer("g-seed", long(seed)));
  const double sigma = a.real("noise", 0.05), w = a.real("cfg", 0.0);
  const std::string strategy = a.str("strategy", "align"), distance = a.str("distance", "mse"),
                    denoise_mode = a.str("denoise", "learned"), cfg_mode = a.str("cfg-mode", "train");
  if (strategy != "naive" && strategy != "distill" && strategy != "align")
    a.fail("--strategy must be naive, distill or align");
  if (denoise_mode != "learned" && denoise_mode != "score" && denoise_mode != "none")
    a.fail("--denoise must be learned, score or none");
  if (cfg_mode != "train" && cfg_mode != "inference") a.fail("--cfg-mode must be train or inference");
  if (denoise_mode == "learned" && !(sigma > 0)) a.fail("--denoise learned needs --noise > 0");
  const long steps = a.integer("steps", 2000), batch = a.integer("batch", 128);
  // Data parallel (--distributed mpi): every rank draws each whole global batch from the same Rng and trains on its
  // shard of the rows; gradients are averaged (dist::make_data_parallel).
  const dist::Shard shard = dist::shard(batch, comm.rank(), comm.size());
  const auto mine = [&](const Tensor<B>& t) {
    return from_host<B>(HostMatrix<float>(to_host(t).middleRows(shard.begin, shard.size())));
  };
  const long flow_steps = a.integer("flow-steps", 2000);
  const double a_scale = data::dequantize_scale(all.levels);
  Rng eval(12345);
  const HostMatrix<float> xall = data::dequantize(all.pixels, all.levels, eval);
  const HostMatrix<float> xte = xall.bottomRows(test.rows());
  const HostMatrix<float> cte = data::class_condition(test.labels, kClasses, 0.0, eval);
  auto batch_rows = [&](Rng& rng, HostMatrix<float>& v, std::vector<int>& labels) {
    for (long i = 0; i < v.rows(); ++i) {
      const long r = long(rng.below(std::uint64_t(train.rows())));
      v.row(i) = train.pixels.row(r);
      labels[std::size_t(i)] = train.labels[std::size_t(r)];
    }
    return data::dequantize(v, all.levels, rng);
  };

  // ---- 1. the forward model F ---------------------------------------------------------------------------------
  TarFlowConfig fc;
  fc.image = {1, 8, 8, 2, PatchOrder::channel_major};
  fc.width = a.integer("width", 64);
  fc.blocks = a.integer("blocks", 8);
  fc.layers = a.integer("flow-layers", 1);
  fc.heads = a.integer("heads", 4);
  fc.num_classes = kClasses;
  Rng init(seed + 1);
  TarFlow<B> flow(fc, init);
  double flow_seconds = 0;
  if (a.has("load-flow")) {
    io::load_safetensors(a.str("load-flow", ""), flow);
    std::printf("F: loaded %s\n", a.str("load-flow", "").c_str());
  } else {
    TrainOptions o;
    o.lr = 2e-3;
    o.warmup = std::min<long>(200, std::max<long>(1, flow_steps / 10));
    o.total_steps = std::max<long>(1, flow_steps);
    o.min_lr_fraction = 0.02;
    o.weight_decay = 0.1;
    o.beta2 = 0.95;
    o.ema_decay = 0.9995;
    MleTrainer<TarFlow<B>> trainer(flow, o);
    if (comm.size() > 1) dist::make_data_parallel(trainer, flow, comm);
    Rng rng(seed + 2);
    Progress progress(flow_steps, "train F", distributed.progress_stream());
    HostMatrix<float> v(batch, 64);
    std::vector<int> labels(static_cast<std::size_t>(batch));
    const auto t0 = std::chrono::steady_clock::now();
    double avg = 0;
    for (long s = 0; s < flow_steps; ++s) {
      Tensor<B> x = from_host<B>(batch_rows(rng, v, labels));
      Tensor<B> eps(batch, 64, uninit);
      fill_normal(eps, rng);
      map(x, fn::Axpby{1.0, sigma}, x, eps);
      Tensor<B> c = from_host<B>(data::class_condition(labels, kClasses, 0.1, rng));
      if (comm.size() > 1) {  // every rank drew the whole global batch: keep this rank's rows
        x = mine(x);
        c = mine(c);
      }
      const StepResult r = trainer.step(x, c);
      if (!r.skipped) avg = avg == 0 ? r.loss : 0.98 * avg + 0.02 * r.loss;
      progress.update(s + 1, bits_per_dim(avg, 64, a_scale), "(bits/dim of noisy batches)");
    }
    flow_seconds = seconds_since(t0);
    if (trainer.has_ema()) trainer.ema().swap(flow);
    if (distributed.lead() && a.has("save-flow")) {
      io::save_safetensors(a.str("save-flow", ""), flow,
                           {{"model", "TarFlow"}, {"width", std::to_string(fc.width)},
                            {"blocks", std::to_string(fc.blocks)}, {"layers", std::to_string(fc.layers)},
                            {"noise", std::to_string(sigma)}, {"num_classes", "10"}});
      std::printf("F: saved %s\n", a.str("save-flow", "").c_str());
    }
  }
  std::printf("F: TARFlow %ld blocks x %ld layers, width %ld, %ld parameters, trained with noise %.3g\n", fc.blocks,
              fc.layers, fc.width, long(parameter_count(flow)), sigma);

  // ---- 2. the evaluation classifier (also the feature network of --distance feature) ----------------------------
  auto train_classifier = [&](std::vector<long> sizes, std::uint64_t cseed) {
    Rng crng(cseed);
    MlpClassifier<B> c(std::move(sizes), crng);
    TrainOptions co;  // lr 3e-3 decaying in a straight line over 4000 steps, no warm-up, no clipping
    co.lr = 3e-3;
    co.warmup = 0;
    co.total_steps = 4000;
    co.linear_decay = true;
    co.clip = 0;
    Optimization<B> opt(co);
    HostMatrix<float> v(128, 64);
    std::vector<int> labels(128);
    for (int s = 0; s < 4000; ++s) {
      const Tensor<B> x = from_host<B>(batch_rows(crng, v, labels));
      c.train_step(x, from_host<B>(data::one_hot<float>(labels, kClasses)), opt);
    }
    return c;
  };
  // The evaluator: fixed seed, so every run is judged by the same classifier.
  const MlpClassifier<B> clf = train_classifier({64, 128, 64, 10}, 777);
  // The feature network of --distance feature is a *different* classifier (other width and seed), so training
  // does not optimise the very features digits-FD is measured with (as the paper trains with VGG/ConvNeXt
  // features and evaluates with Inception).
  MlpClassifier<B> feat_clf = distance.find("feature") != std::string::npos ? train_classifier({64, 96, 48, 10}, 4242)
                                                                           : MlpClassifier<B>{};
  const double clf_acc = clf.accuracy(from_host<B>(xte), test.labels);
  std::printf("classifier 64-128-64-10: test accuracy %.4f\n", clf_acc);

  // ---- 3. the learned reverse model G -----------------------------------------------------------------------------
  ReverseConfig rc;
  rc.tokens = fc.image.tokens();
  rc.token_dim = fc.image.token_dim();
  rc.width = a.integer("g-width", 64);
  rc.stages = a.integer("stages", 2);
  rc.layers = a.integer("g-layers", 1);
  rc.heads = a.integer("heads", 4);
  rc.cond_features = fc.cond_features();
  rc.guidance = w != 0 && cfg_mode == "train";
  rc.bottleneck = strategy == "distill";
  rc.denoise_stage = denoise_mode == "learned";
  Rng ginit(gseed + 11);
  Rev g(rc, ginit);

  ReverseTrainOptions ro;
  ro.optim.lr = a.real("lr", 2e-3);
  ro.optim.warmup = std::min<long>(200, std::max<long>(1, steps / 10));
  ro.optim.total_steps = std::max<long>(1, steps);
  ro.optim.min_lr_fraction = 0.02;
  ro.optim.beta2 = 0.95;
  ro.optim.weight_decay = 0.01;
  ro.optim.ema_decay = a.real("ema", 0.999);
  ro.noise = sigma;
  ro.state_clip = a.real("state-clip", 0.0);
  if (rc.guidance) ro.guidance_max = a.real("cfg-max", 3.0);
  MlpFeatures<B>* fnet = &feat_clf.features;
  const double fw = a.real("feature-weight", 0.1);
  // The distance is chosen at run time: AnyDistance<B> holds any of the compile-time distance policies.
  AnyDistance<B> dist = distance == "mse"       ? AnyDistance<B>(Mse{})
                        : distance == "l1"      ? AnyDistance<B>(L1{})
                        : distance == "huber"   ? AnyDistance<B>(Huber{0.1})
                        : distance == "cosine"  ? AnyDistance<B>(Sum<Mse, Cosine>{{}, {}, 1.0, 0.1})
                        : distance == "feature" ? AnyDistance<B>(Feature<MlpFeatures<B>, Mse>{fnet})
                        : distance == "mse+feature"
                            ? AnyDistance<B>(Sum<Mse, Feature<MlpFeatures<B>, Mse>>{{}, {fnet}, 1.0, fw})
                            : (a.fail("unknown --distance '" + distance + "'"), AnyDistance<B>{});
  if (a.has("adaptive")) dist = Adaptive<AnyDistance<B>>{dist, a.real("adaptive", 0.5), 1e-3};

  Rng head_rng(gseed + 12);
  HiddenAlignment<B> align(rc, head_rng, !a.has("no-head-norm"));
  NaiveDistillation naive;
  HiddenDistillation distill;
  double g_seconds = 0, last_loss = 0;
  const double sd = sigma > 0 ? sigma : a_scale / std::sqrt(12.0);  // the noise the denoiser removes
  // Optional pool of F's own samples (exact inverse + score denoising) mixed into G's batches as extra "data":
  // re-noised, they map under F to z spread like N(0, I), where G is used, and not only near F(training digits).
  const long pool_n = a.integer("sample-pool", 0);
  const double pool_frac = a.real("pool-fraction", pool_n > 0 ? 0.5 : 0.0);
  HostMatrix<float> pool(pool_n, 64);
  std::vector<int> pool_labels(static_cast<std::size_t>(pool_n));
  double pool_seconds = 0;
  if (pool_n > 0) {
    const auto t0 = std::chrono::steady_clock::now();
    Rng prng(gseed + 14);
    for (auto& l : pool_labels) l = int(prng.below(kClasses));
    const HostMatrix<float> pc = data::one_hot<float>(pool_labels, kClasses + 1);
    const HostMatrix<float> pz = to_host(StandardNormal::sample<B>(pool_n, 64, prng));
    for (long r = 0; r < pool_n; r += kBatchEval) {
      const long n = std::min(kBatchEval, pool_n - r);
      const Tensor<B> c = from_host<B>(pc.middleRows(r, n));
      pool.middleRows(r, n) = to_host(denoise(flow, flow.inverse(from_host<B>(pz.middleRows(r, n)), c, logdet::none).y, sd, c));
    }
    pool_seconds = seconds_since(t0);
    std::printf("G's sample pool: %ld exact-inverse samples of F in %.1f s, %.0f%% of each batch\n", pool_n,
                pool_seconds, 100 * pool_frac);
  }
  auto train_g = [&](auto& strat) {
    using S = std::remove_reference_t<decltype(strat)>;
    ReverseTrainer<TarFlow<B>, Rev, S, AnyDistance<B>> trainer(flow, g, strat, ro, dist);
    Rng rng(gseed + 13);
    Progress progress(steps, "train G", distributed.progress_stream());
    HostMatrix<float> v(batch, 64);
    std::vector<int> labels(static_cast<std::size_t>(batch));
    // Checkpoints hold everything the optimiser updates (G and the strategy's heads), its state and the batch stream.
    auto trainable = trainer.trainable();
    const std::string gckpt = a.str("checkpoint", "");
    const long gevery = a.integer("checkpoint-every", gckpt.empty() ? 0 : 500);
    const long gstop = a.has("stop-after") ? std::min(steps, a.integer("stop-after", steps)) : steps;
    auto checkpoint = [&] {
      if (!distributed.lead()) return;  // every rank holds the same state: rank 0 writes it
      save_checkpoint(gckpt, trainable, trainer, {{"data", &rng}}, {{"strategy", strategy}});
      std::fprintf(stderr, "checkpoint: G step %ld -> %s\n", trainer.steps(), gckpt.c_str());
    };
    if (a.has("resume")) {
      load_checkpoint(a.str("resume", ""), trainable, trainer, {{"data", &rng}});
      std::printf("G: resumed %s at step %ld\n", a.str("resume", "").c_str(), trainer.steps());
    }
    if (comm.size() > 1) dist::make_data_parallel(trainer, trainable, comm);
    // The step's noise and guidance draws are made for the whole global batch (BatchRows): Rngs stay in step.
    const BatchRows rows{shard.begin, comm.size() > 1 ? batch : 0};
    const auto t0 = std::chrono::steady_clock::now();
    double avg = 0;
    for (long s = trainer.steps(); s < gstop; ++s) {
      HostMatrix<float> xb = batch_rows(rng, v, labels);
      for (long i = 0; pool_n > 0 && i < batch; ++i)
        if (rng.uniform() < pool_frac) {
          const long r = long(rng.below(std::uint64_t(pool_n)));
          xb.row(i) = pool.row(r);
          labels[std::size_t(i)] = pool_labels[std::size_t(r)];
        }
      Tensor<B> x = from_host<B>(xb);
      Tensor<B> c = from_host<B>(data::class_condition(labels, kClasses, 0.1, rng));
      if (comm.size() > 1) {
        x = mine(x);
        c = mine(c);
      }
      const ReverseStepResult r = trainer.step(x, c, rng, rows);
      if (!r.skipped) avg = avg == 0 ? r.loss : 0.98 * avg + 0.02 * r.loss;
      progress.update(s + 1, avg, "(G loss)");
      if (gevery > 0 && (s + 1) % gevery == 0 && s + 1 < gstop) checkpoint();
    }
    if (!gckpt.empty()) checkpoint();
    g_seconds = seconds_since(t0);
    last_loss = avg;
    if (trainer.has_ema()) trainer.ema().swap(g);
  };
  if (a.has("load-g")) {  // a G written by --save-g (same G flags): no training
    io::load_safetensors(a.str("load-g", ""), g);
    std::printf("G: loaded %s\n", a.str("load-g", "").c_str());
  } else if (strategy == "naive") {
    train_g(naive);
  } else if (strategy == "distill") {
    train_g(distill);
  } else {
    train_g(align);
  }
  if (distributed.lead() && a.has("save-g")) {  // G's (EMA) weights; the alignment heads are training-only and not saved
    io::save_safetensors(a.str("save-g", ""), g,
                         {{"model", "ReverseModel"}, {"width", std::to_string(rc.width)},
                          {"stages", std::to_string(rc.stages)}, {"layers", std::to_string(rc.layers)},
                          {"strategy", strategy}, {"denoise", denoise_mode}});
    std::printf("G: saved %s\n", a.str("save-g", "").c_str());
  }
  std::printf("G: %ld stages x %ld bidirectional layers, width %ld, %ld parameters; strategy %s, distance %s, "
              "denoise %s; %ld steps in %.1f s\n",
              rc.total_stages(), rc.layers, rc.width, long(parameter_count(g)), strategy.c_str(), dist.name().c_str(),
              denoise_mode.c_str(), a.has("load-g") ? 0L : steps, g_seconds);

  // ---- 4. evaluation ------------------------------------------------------------------------------------------
  const BiFlow bf{flow, g};
  // Reconstruction G(F(x)) on the test digits.
  const Tensor<B> rec = bf.reconstruct(from_host<B>(xte), from_host<B>(cte));
  const double recon_mse = double((to_host(rec) - xte).squaredNorm()) / double(xte.size());

  std::vector<int> labels(std::size_t(kClasses * kPerClass));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = int(i / kPerClass);
  const HostMatrix<float> call = data::one_hot<float>(labels, kClasses + 1);
  Rng zrng(seed + 3);
  const HostMatrix<float> zall = to_host(StandardNormal::sample<B>(long(labels.size()), 64, zrng));
  HostMatrix<float> exact(zall.rows(), 64), exact_raw(zall.rows(), 64), learned(zall.rows(), 64);
  double exact_s = 0, learned_s = 0;
  for (long r = 0; r < zall.rows(); r += kBatchEval) {
    const Tensor<B> z = from_host<B>(zall.middleRows(r, kBatchEval)), c = from_host<B>(call.middleRows(r, kBatchEval));
    auto t0 = std::chrono::steady_clock::now();
    const Tensor<B> raw = flow.inverse(z, c, Guidance<B>{w, false, {}}, logdet::none).y;
    const Tensor<B> ex = denoise(flow, raw, sd, c);
    exact_s += seconds_since(t0);
    exact.middleRows(r, kBatchEval) = to_host(ex);
    exact_raw.middleRows(r, kBatchEval) = to_host(raw);
    t0 = std::chrono::steady_clock::now();
    Tensor<B> y = w == 0           ? bf.generate(z, c)
                  : rc.guidance    ? bf.generate(z, c, constant<B>(kBatchEval, 1, float(w)))
                                   : bf.generate_guided(z, c, w);
    if (denoise_mode == "score") y = denoise(flow, y, sd, c);
    learned_s += seconds_since(t0);
    learned.middleRows(r, kBatchEval) = to_host(y);
  }
  exact_s /= double(zall.rows());
  learned_s /= double(zall.rows());
  // Sample quality at equal n against the held-out test digits, with the reference rows computed the same way.
  auto features = [&](const HostMatrix<float>& x) {
    return HostMatrix<double>(to_host(clf.feature_rows(from_host<B>(x))).cast<double>());
  };
  const HostMatrix<float> xtrain = xall.topRows(kTrain);
  // Two feature spaces, same splits: pixels (where a diagonal Gaussian per class ranks as bad) and the evaluation
  // classifier's features (which reward class-typical digits: class mean + noise scores like real digits there).
  const QualityOptions qo{.replicates = a.integer("replicates", 100), .seed = seed + 4};
  const QualitySuite suite(xte.cast<double>(), xte.cast<double>(), xtrain.cast<double>(), qo),
      suite_clf(features(xte), xte.cast<double>(), xtrain.cast<double>(), qo);
  std::vector<examples::QualityEntry> table_clf;
  auto judge = [&](const char* key, const char* label, const HostMatrix<float>& x, const std::vector<int>& lab) {
    const HostMatrix<float> xc = clamp_pixels(x);
    const double acc = clf.accuracy(from_host<B>(xc), lab);
    table_clf.push_back({key, label, suite_clf.evaluate(features(xc), xc.cast<double>()), acc});
    return examples::QualityEntry{key, label, suite.evaluate(xc.cast<double>(), xc.cast<double>()), acc};
  };
  // A memoriser: 1000 distinct training digits (with their labels).
  Rng brng(seed + 5);
  const std::vector<long> copy_pick = choose_distinct(kTrain, long(labels.size()), brng);
  std::vector<int> copy_labels;
  for (long r : copy_pick) copy_labels.push_back(train.labels[std::size_t(r)]);
  const std::vector<examples::QualityEntry> table = {
      judge("exact", "exact inverse + score denoising", exact, labels),
      judge("learned", "learned inverse G (1 pass)", learned, labels),
      judge("exact_no_denoise", "exact inverse, no denoising", exact_raw, labels),
      judge("train_copies", "ref: copied training digits", copy_rows(xtrain, copy_pick), copy_labels),
      {"heldout", "ref: held-out test digits (half)", suite.heldout_split(), clf_acc},
      judge("mean_noise", "ref: class mean + noise", class_mean_noise(xtrain, train.labels, kClasses, labels, brng),
            labels)};
  const double speedup = exact_s / learned_s;
  // How far G is from F^-1 where it is used: on z ~ N(0, I), not on F(test digits).
  const double sample_mse = double((clamp_pixels(learned) - clamp_pixels(exact)).squaredNorm()) / double(exact.size());
  std::printf("reconstruction G(F(x)) on test: MSE %.5f per pixel; G(z) vs exact inverse on the samples: MSE %.5f\n",
              recon_mse, sample_mse);
  table_clf.insert(table_clf.begin() + 4,
                   {"heldout", "ref: held-out test digits (half)", suite_clf.heldout_split(), clf_acc});
  examples::print_quality(table, suite, "pixels");
  examples::print_quality(table_clf, suite_clf, "classifier features");
  const double fd_ratio = table[1].row.fd.median / table[0].row.fd.median;
  std::printf("learned vs exact (pixel FD medians): %.3f\n", fd_ratio);
  std::printf("time per image: exact + score denoising %.4f ms, learned %.4f ms; speedup (batch %ld, %d thread%s): "
              "%.1fx; guidance w = %g\n",
              1e3 * exact_s, 1e3 * learned_s, kBatchEval, cpu::threads(), cpu::threads() > 1 ? "s" : "", speedup, w);
  if (distributed.lead() && a.has("save-samples"))
    examples::save_samples(a.str("save-samples", ""),
                           {{"exact", clamp_pixels(exact)}, {"learned", clamp_pixels(learned)}}, labels);

  if (distributed.lead() && a.has("plot")) {
    HostMatrix<float> pick(100, 64), pick_l(100, 64);
    for (int i = 0; i < 100; ++i) {  // 10 per class, same noise for both
      pick.row(i) = exact.row((i / 10) * kPerClass + i % 10);
      pick_l.row(i) = learned.row((i / 10) * kPerClass + i % 10);
    }
    const examples::Image ge = grid(clamp_pixels(pick), 3), gl = grid(clamp_pixels(pick_l), 3);
    examples::Image img(2 * ge.w + 20, ge.h);
    img.paste(ge, 0, 0);
    img.paste(gl, ge.w + 20, 0);
    examples::write_png(a.str("plot", ""), img);
    std::printf("wrote %s (rows: classes 0-9; left: exact inverse + score denoising, right: learned inverse; same "
                "noise)\n",
                a.str("plot", "").c_str());
  }
  if (distributed.lead() && a.has("report")) {
    // A fingerprint of G's final weights to all 17 digits: a resumed run must reproduce it exactly.
    double g_param_sum = 0;
    g.visit_parameters([&](const std::string&, auto& p) { g_param_sum += double(to_host(p.value).template cast<double>().sum()); }, "");
    char gsum[40];
    std::snprintf(gsum, sizeof gsum, "%.17g", g_param_sum);
    std::ofstream f(a.str("report", ""));
    f.precision(8);
    f << "{\n  \"strategy\": \"" << strategy << "\",\n  \"distance\": \"" << dist.name() << "\",\n  \"denoise\": \""
      << denoise_mode << "\"" << examples::quality_json(table, suite, "pix", true)
      << examples::quality_json(table_clf, suite_clf, "clf", false) << ",\n  \"fd_pix_learned_over_exact\": " << fd_ratio
      << ",\n  \"recon_mse\": " << recon_mse << ",\n  \"g_param_sum\": " << gsum << ",\n  \"sample_mse_learned_vs_exact\": " << sample_mse
      << ",\n  \"seconds_per_image_learned\": " << learned_s << ",\n  \"seconds_per_image_exact\": " << exact_s
      << ",\n  \"speedup\": " << speedup << ",\n  \"classifier_test_accuracy\": " << clf_acc
      << ",\n  \"cfg\": " << w << ",\n  \"cfg_mode\": \"" << cfg_mode << "\",\n  \"state_clip\": " << ro.state_clip
      << ",\n  \"head_norm\": " << (a.has("no-head-norm") ? "false" : "true") << ",\n  \"noise\": " << sigma
      << ",\n  \"g_params\": " << parameter_count(g) << ",\n  \"f_params\": " << parameter_count(flow)
      << ",\n  \"sample_pool\": " << pool_n << ",\n  \"pool_fraction\": " << pool_frac
      << ",\n  \"pool_seconds\": " << pool_seconds << ",\n  \"g_steps\": " << (a.has("load-g") ? 0L : steps) << ",\n  \"g_train_seconds\": " << g_seconds << ",\n  \"g_final_loss\": "
      << last_loss << ",\n  \"f_train_seconds\": " << flow_seconds << ",\n  \"threads\": " << cpu::threads()
      << ",\n  \"seed\": " << seed << ",\n  \"g_seed\": " << gseed << "\n}\n";
    if (!f) throw io_error("cannot write report '" + a.str("report", "") + "'");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "digits_biflow: %s\n", e.what());
  return 1;
}
