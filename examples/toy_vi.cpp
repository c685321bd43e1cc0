// toy_vi: variational inference with a normalizing flow. Fits a flow q to an unnormalised density p̃ by maximising
// the ELBO (reverse KL; reparameterised gradients through the flow used as a sampler, x = F(ε)), then reports the
// ELBO, the importance-weighted log Z estimate and the effective sample size against the true log Z, beside two
// baselines every table needs: the untrained flow and the plain N(0, I) sampler.
#include <biflow/biflow.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/args.hpp"
#include "common/png_impl.hpp"

using namespace biflow;
using B = Cpu<float>;

static const char* kUsage =
    "usage: toy_vi [--target funnel|banana|u1|u2|u3|u4] [--dim 2] [--model planar|radial|sylvester|iaf|nsf-ar]\n"
    "              [--layers N] [--hidden 32] [--steps 5000] [--samples 256] [--lr 3e-3] [--seed 0]\n"
    "              [--eval-samples 100000] [--report out.json] [--plot out.png]\n"
    "Targets: Neal's funnel (--dim D, log Z exact), a banana (log Z exact), the energies U1-U4 of Rezende & Mohamed\n"
    "(2015; log Z by quadrature on a 2000x2000 grid). Models (default --layers): planar (16), radial (16), sylvester\n"
    "(8; Householder Q, M = D), iaf (4; MADE-affine layers used as the sampler: one pass), nsf-ar (4; autoregressive\n"
    "rational-quadratic splines, one pass). The plot (2-D view: the first two coordinates) shows the target density\n"
    "and a histogram of the flow's samples.";

namespace {

using Planars = Repeat<dynamic, Planar<B>>;
using Radials = Repeat<dynamic, Radial<B>>;
using Sylvesters = Repeat<dynamic, Sylvester<B>>;
using Iaf = Repeat<dynamic, Sequential<MaskedAutoregressive<B>, Permutation<B>>>;
using NsfAr = Repeat<dynamic, Sequential<SplineAutoregressive<B>, Permutation<B>>>;

void write_estimate(std::ofstream& f, const char* key, const vi::Estimate& e) {
  f << ",\n  \"" << key << "\": {\"elbo\": " << e.elbo << ", \"elbo_stderr\": " << e.elbo_stderr
    << ", \"log_z_estimate\": " << e.log_z << ", \"ess_fraction\": " << e.ess_fraction
    << ", \"nonfinite\": " << e.nonfinite << "}";
}

template <class F>
int run(F& flow, const std::string& model, long layers, const examples::Args& a, const vi::HostTarget& target) {
  const long steps = a.integer("steps", 5000), samples = a.integer("samples", 256);
  const long eval_n = a.integer("eval-samples", 100000);
  if (steps < 0 || samples < 1 || eval_n < 1) a.fail("--steps must be >= 0, --samples and --eval-samples positive");
  const std::uint64_t seed = std::uint64_t(a.integer("seed", 0));
  // The true log Z: exact where known, else by quadrature over a window holding the mass (2-D energies).
  double log_z = target.log_z();
  std::string log_z_source = "exact";
  if (!std::isfinite(log_z)) {
    log_z = vi::quadrature_log_z(target, {-8, 8, -8, 8}, 2000);
    log_z_source = "quadrature";
  }
  std::printf("toy_vi: %s flow (%ld layers, %ld parameters) on %s (%ld-D, log Z %.4f, %s)\n", model.c_str(), layers,
              long(parameter_count(flow)), target.name().c_str(), target.features(), log_z, log_z_source.c_str());

  // Baselines, measured with the same estimator: the N(0, I) sampler and the untrained flow.
  Rng erng(seed * 7919 + 3);
  const DiagonalScaling<B> identity(target.features());
  const vi::Estimate base = vi::estimate(identity, target, eval_n, erng);
  const vi::Estimate init = vi::estimate(flow, target, eval_n, erng);

  TrainOptions o;
  o.lr = a.real("lr", 3e-3);
  o.total_steps = std::max<long>(1, steps);
  o.warmup = std::max<long>(1, std::min<long>(200, steps / 10));
  o.clip = 10.0;
  vi::ElboTrainer<F, vi::HostTarget> trainer(flow, target, o, samples);
  Rng rng(seed * 7919 + 17);
  Progress prog(steps, "train");
  std::vector<double> step_ms;
  step_ms.reserve(std::size_t(steps));
  double smooth = 0;
  for (long s = 0; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    const StepResult r = trainer.step(rng);
    step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!r.skipped) smooth = s == 0 ? -r.loss : 0.98 * smooth - 0.02 * r.loss;
    prog.update(s + 1, smooth);
  }
  const double seconds = prog.seconds();
  std::vector<double> steady(step_ms.begin() + long(step_ms.size() / 10), step_ms.end());
  double median_ms = 0;
  if (!steady.empty()) {
    std::nth_element(steady.begin(), steady.begin() + long(steady.size() / 2), steady.end());
    median_ms = steady[steady.size() / 2];
  }
  const vi::Estimate fin = vi::estimate(flow, target, eval_n, erng);
  std::printf("%-22s %12s %14s %10s\n", "sampler", "ELBO", "log Z estimate", "ESS");
  const auto row = [](const char* n, const vi::Estimate& e) {
    std::printf("%-22s %7.4f±%.4f %14.4f %10.4f\n", n, e.elbo, e.elbo_stderr, e.log_z, e.ess_fraction);
  };
  row("N(0, I) (baseline)", base);
  row("untrained flow", init);
  row("trained flow", fin);
  std::printf("true log Z %.4f (%s): KL(q||p) ~ %.4f nats; %ld steps in %.1f s (median step %.3f ms)%s\n", log_z,
              log_z_source.c_str(), log_z - fin.elbo, steps, seconds, median_ms,
              trainer.skipped_steps() ? (", " + std::to_string(trainer.skipped_steps()) + " steps skipped").c_str() : "");

  if (a.has("plot")) {
    const int n = 200;
    // The 2-D view: the target itself, or for the funnel in D > 2 its (v, x1) marginal, which is the 2-D funnel.
    const vi::HostTarget view = target.features() == 2 ? target : vi::targets::funnel(2);
    const vi::PlotBox bx = view.box();
    HostMatrix<double> grid(n * n, 2);
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x)
        grid.row(y * n + x) << bx.x0 + (x + 0.5) * (bx.x1 - bx.x0) / n, bx.y1 - (y + 0.5) * (bx.y1 - bx.y0) / n;
    const HostMatrix<double> lp = view.log_prob(grid);
    HostMatrix<double> dens(n, n);
    const double mx = lp.maxCoeff();
    for (int i = 0; i < n * n; ++i) dens(i / n, i % n) = std::exp(lp(i, 0) - mx);
    Rng srng(99);
    const HostMatrix<double> xs = to_host(forward_sample_and_log_prob(flow, 100000, srng).x).template cast<double>();
    examples::Image img(2 * n + 10, n);
    img.paste(examples::heatmap(dens), 0, 0);
    img.paste(examples::heatmap(examples::histogram2d(xs.leftCols(2), bx.x0, bx.x1, bx.y0, bx.y1, n)), n + 10, 0);
    examples::write_png(a.str("plot", ""), img);
    std::printf("wrote %s (left: target density, right: 100000 samples of the flow)\n", a.str("plot", "").c_str());
  }
  if (a.has("report")) {
    std::ofstream f(a.str("report", ""));
    f.precision(8);
    f << "{\n  \"target\": \"" << target.name() << "\",\n  \"dim\": " << target.features() << ",\n  \"model\": \""
      << model << "\",\n  \"layers\": " << layers << ",\n  \"params\": " << parameter_count(flow)
      << ",\n  \"steps\": " << steps << ",\n  \"samples\": " << samples << ",\n  \"seed\": " << seed
      << ",\n  \"eval_samples\": " << eval_n << ",\n  \"elbo\": " << fin.elbo << ",\n  \"elbo_stderr\": "
      << fin.elbo_stderr << ",\n  \"log_z_estimate\": " << fin.log_z << ",\n  \"ess_fraction\": " << fin.ess_fraction
      << ",\n  \"log_z_true\": " << log_z << ",\n  \"log_z_source\": \"" << log_z_source
      << "\",\n  \"kl_estimate\": " << log_z - fin.elbo << ",\n  \"seconds\": " << seconds
      << ",\n  \"median_step_ms\": " << median_ms << ",\n  \"skipped_steps\": " << trainer.skipped_steps();
    f << ",\n  \"baseline_normal_elbo\": " << base.elbo << ",\n  \"baseline_untrained_elbo\": " << init.elbo;
    write_estimate(f, "baseline_standard_normal", base);
    write_estimate(f, "baseline_untrained", init);
    f << "\n}\n";
    if (!f) throw io_error("cannot write report '" + a.str("report", "") + "'");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  examples::Args a(argc, argv, kUsage,
                   {"target", "dim", "model", "layers", "hidden", "steps", "samples", "lr", "seed", "eval-samples",
                    "report", "plot"});
  const std::string tname = a.str("target", "funnel"), model = a.str("model", "planar");
  const long dim = a.integer("dim", 2), hidden = a.integer("hidden", 32);
  if (tname != "funnel" && dim != 2) a.fail("--dim applies to the funnel only (the other targets are 2-D)");
  const vi::HostTarget target = vi::targets::by_name(tname, dim);
  const long d = target.features();
  const long def_layers = model == "planar" || model == "radial" ? 16 : model == "sylvester" ? 8 : 4;
  const long layers = a.integer("layers", def_layers);
  if (layers < 1 || hidden < 1) a.fail("--layers and --hidden must be positive");
  Rng init(std::uint64_t(a.integer("seed", 0)) + 1);
  if (model == "planar") {
    Planars flow(std::size_t(layers), [&](std::size_t) { return Planar<B>(d, init); });
    return run(flow, model, layers, a, target);
  }
  if (model == "radial") {
    Radials flow(std::size_t(layers), [&](std::size_t) { return Radial<B>(d, init); });
    return run(flow, model, layers, a, target);
  }
  if (model == "sylvester") {
    Sylvesters flow(std::size_t(layers), [&](std::size_t) { return Sylvester<B>(d, d, d, init); });
    return run(flow, model, layers, a, target);
  }
  if (model == "iaf") {
    Iaf flow(std::size_t(layers), [&](std::size_t) {
      return Sequential<MaskedAutoregressive<B>, Permutation<B>>(MaskedAutoregressive<B>(d, {hidden, hidden}, init),
                                                                 Permutation<B>::reverse(d));
    });
    return run(flow, model, layers, a, target);
  }
  if (model == "nsf-ar") {
    NsfAr flow(std::size_t(layers), [&](std::size_t) {
      return Sequential<SplineAutoregressive<B>, Permutation<B>>(SplineAutoregressive<B>(d, {hidden, hidden}, init),
                                                                 Permutation<B>::reverse(d));
    });
    return run(flow, model, layers, a, target);
  }
  a.fail("--model must be planar, radial, sylvester, iaf or nsf-ar, got '" + model + "'");
} catch (const std::exception& e) {
  std::fprintf(stderr, "toy_vi: %s\n", e.what());
  return 1;
}
