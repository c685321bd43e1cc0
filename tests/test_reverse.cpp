// The learned reverse model (reverse/stages.hpp, reverse/reverse_model.hpp, reverse/distance.hpp,
// reverse/feature_distance.hpp, reverse/any_distance.hpp, reverse/strategy.hpp, reverse/trainer.hpp,
// reverse/biflow.hpp) and the
// evaluation helpers it is judged with (eval/classifier.hpp, eval/frechet.hpp, train/cross_entropy.hpp).
#include <cmath>

#include "helpers.hpp"

using namespace tests;
using D = Cpu<double>;

namespace {
double max_abs(const auto& a, const auto& b) { return double((a - b).cwiseAbs().maxCoeff()); }

ReverseConfig tiny_reverse(bool cond = false, bool guidance = false, bool bottleneck = false, bool denoise = false) {
  ReverseConfig c;
  c.tokens = 4;
  c.token_dim = 2;
  c.width = 8;
  c.stages = 2;
  c.layers = 1;
  c.heads = 2;
  c.mlp_ratio = 2.0;
  c.cond_features = cond ? 3 : 0;
  c.guidance = guidance;
  c.bottleneck = bottleneck;
  c.denoise_stage = denoise;
  return c;
}

Tensor<D> cond_rows(const std::vector<int>& labels, long classes) {
  return from_host<D>(data::one_hot<double>(labels, classes));
}

/// FD check of G's input and parameter gradients for loss = Σ r⊙out + Σ_j r_j⊙hidden[j] (hidden < S'−1).
template <class G>
testing::CheckReport check_reverse_grads(G g, const Tensor<D>& z, const Tensor<D>& cond, const Tensor<D>& w) {
  Rng rng(7);
  typename G::Context ctx;
  const Tensor<D> out = g.forward(z, cond, w, ctx);
  const HostMatrix<double> r = testing::detail::random_host<double>(out.rows(), out.cols(), rng);
  std::vector<HostMatrix<double>> rh;
  for (long j = 0; j + 1 < g.num_stages(); ++j)
    rh.push_back(testing::detail::random_host<double>(ctx.hidden[std::size_t(j)].rows(),
                                                      ctx.hidden[std::size_t(j)].cols(), rng));
  auto loss_at = [&](const Tensor<D>& zz) {
    typename G::Context c;
    double l = to_host(g.forward(zz, cond, w, c)).cwiseProduct(r).sum();
    for (std::size_t j = 0; j < rh.size(); ++j) l += to_host(c.hidden[j]).cwiseProduct(rh[j]).sum();
    return l;
  };
  zero_grad(g);
  std::vector<Tensor<D>> dh;
  for (const auto& m : rh) dh.push_back(from_host<D>(m));
  const HostMatrix<double> dz = to_host(g.backward(ctx, from_host<D>(r), dh));
  const auto pg = testing::detail::grads_of(g);
  testing::CheckReport rep;
  rep.inference_error = testing::detail::max_abs_diff(g.forward(z, cond, w), out);
  rep.grad_mode_error = testing::detail::grad_mode_deviation(g, dz, pg, [&](GradMode m) {
    return g.backward(ctx, from_host<D>(r), dh, m);
  });
  rep.input_grad_error = testing::detail::input_grad_error(z, dz, loss_at, 1e-6);
  testing::detail::check_param_grads(g, pg, [&] { return loss_at(z); }, testing::CheckOptions{}, rep);
  return rep;
}
}  // namespace

TEST_CASE("reverse stages (bidirectional transformer, residual MLP) have gradients matching finite differences") {
  Rng rng(1);
  const StageShape s{4, 8, 2, 2, 2.0};
  TransformerStage<D> ts(s, rng);
  MlpStage<D> ms(s, rng);
  const Tensor<D> x = randn<D>(3 * 4, 8, 2);
  for (const auto& r : {testing::check_module(ts, x), testing::check_module(ms, x)}) check_module_report(r);
  static_assert(Module<TransformerStage<D>> && Module<MlpStage<D>>);
}

TEST_CASE("a transformer reverse stage is bidirectional: the first token depends on the last") {
  Rng rng(2);
  TransformerStage<D> ts({4, 8, 1, 2, 2.0}, rng);
  randomize(ts, 3);
  Tensor<D> x = randn<D>(4, 8, 4);
  typename TransformerStage<D>::Context c1, c2;
  const HostMatrix<double> y1 = to_host(ts.forward(x, c1));
  HostMatrix<double> xh = to_host(x);
  xh(3, 0) += 0.5;  // perturb the last token
  const HostMatrix<double> y2 = to_host(ts.forward(from_host<D>(xh), c2));
  CHECK(max_abs(y1.row(0), y2.row(0)) > 1e-6);
}

TEST_CASE("ReverseModel gradients match finite differences in every configuration") {
  const Tensor<D> z = randn<D>(3, 8, 5);
  const Tensor<D> cond = cond_rows({0, 2, 1}, 3);
  const Tensor<D> w = from_host<D>(HostMatrix<double>{{0.0}, {1.5}, {0.7}});
  struct Case {
    const char* name;
    ReverseConfig c;
    bool cond, guided;
  };
  for (const Case& k : {Case{"unconditional", tiny_reverse(), false, false},
                        Case{"class-conditional + guidance", tiny_reverse(true, true), true, true},
                        Case{"bottleneck (hidden distillation)", tiny_reverse(true, false, true), true, false},
                        Case{"denoise stage", tiny_reverse(false, false, false, true), false, false},
                        Case{"bottleneck + denoise + guidance", tiny_reverse(true, true, true, true), true, true}}) {
    CAPTURE(k.name);
    Rng rng(11);
    ReverseModel<D> g(k.c, rng);
    randomize(g, 12, 0.3);
    check_module_report(check_reverse_grads(g, z, k.cond ? cond : Tensor<D>{}, k.guided ? w : Tensor<D>{}));
  }
}

TEST_CASE("ReverseModel with MLP stages (vector data, T = 1) has gradients matching finite differences") {
  ReverseConfig c;
  c.tokens = 1;
  c.token_dim = 3;
  c.width = 6;
  c.stages = 3;
  c.layers = 2;
  Rng rng(3);
  ReverseModel<D, MlpStage> g(c, rng);
  randomize(g, 4, 0.3);
  const auto r = check_reverse_grads(g, randn<D>(5, 3, 6), {}, {});
  INFO(r.summary());
  CHECK(r.input_grad_error < 1e-6);
  CHECK(r.param_grad_error < 1e-6);
}

TEST_CASE("training-time CFG: at w = 0 the guidance embedding contributes exactly nothing, at w != 0 it does") {
  Rng rng(5);
  ReverseModel<D> g(tiny_reverse(true, true), rng);
  randomize(g, 6);
  const Tensor<D> z = randn<D>(2, 8, 7), cond = cond_rows({0, 1}, 3);
  const HostMatrix<double> a0 = to_host(g.generate(z, cond, Tensor<D>(2, 1)));
  const HostMatrix<double> a1 = to_host(g.generate(z, cond, constant<D>(2, 1, 1.0)));
  ReverseModel<D> h = g;
  Rng r2(9);
  h.guidance_embed.visit_parameters([&](const std::string&, auto& p) { fill_normal(p.value, r2, 0.0, 1.0); }, "");
  CHECK(max_abs(a0, to_host(h.generate(z, cond, Tensor<D>(2, 1)))) == 0.0);
  CHECK(max_abs(a0, to_host(g.generate(z, cond))) == 0.0);  // no w = w 0
  CHECK(max_abs(a0, a1) > 1e-6);
  CHECK(max_abs(a1, to_host(h.generate(z, cond, constant<D>(2, 1, 1.0)))) > 1e-6);
}

TEST_CASE("inference-time CFG on G: w = 0 is the conditional model; the null rows are the unconditional one") {
  Rng rng(5);
  ReverseModel<D> g(tiny_reverse(true), rng);
  randomize(g, 6);
  const Tensor<D> z = randn<D>(2, 8, 7), cond = cond_rows({0, 1}, 3), null = cond_rows({2, 2}, 3);
  const HostMatrix<double> c = to_host(g.generate(z, cond)), u = to_host(g.generate(z, null));
  CHECK(max_abs(to_host(g.generate_guided(z, cond, 0.0)), c) < 1e-12);
  CHECK(max_abs(to_host(g.generate_guided(z, cond, 2.0)), c + 2.0 * (c - u)) < 1e-12);
}

TEST_CASE("ReverseModel names its parameters and reports misuse with the expected and given shapes") {
  Rng rng(1);
  ReverseModel<D> g(tiny_reverse(true, true, true), rng);
  std::vector<std::string> names;
  g.visit_parameters([&](const std::string& n, auto&) { names.push_back(n); }, "");
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  CHECK(has("proj_in.weight"));
  CHECK(has("pos_embed"));
  CHECK(has("class_embed.weight"));
  CHECK(has("guidance_embed.2.weight"));
  CHECK(has("stages.0.layers.0.attn.qkv.weight"));
  CHECK(has("stages.0.readout.weight"));
  CHECK(has("stages.1.embed.weight"));
  CHECK_FALSE(has("stages.0.embed.weight"));
  CHECK_FALSE(has("proj_out.weight"));
  const Tensor<D> cond = cond_rows({0, 1}, 3);
  CHECK(message<shape_error>([&] { g.generate(randn<D>(2, 7, 1), cond); }).find("8") != std::string::npos);
  CHECK(message<shape_error>([&] { g.generate(randn<D>(2, 8, 1)); }).find("no context") != std::string::npos);
  ReverseModel<D> plain(tiny_reverse(), rng);
  CHECK(message<usage_error>([&] { plain.generate(randn<D>(2, 8, 1), {}, Tensor<D>(2, 1)); }).find("guidance") !=
        std::string::npos);
  CHECK(message<usage_error>([&] { plain.generate_guided(randn<D>(2, 8, 1), cond, 1.0); }).find("unconditional") !=
        std::string::npos);
  CHECK(message<usage_error>([&] {
          ReverseConfig c = tiny_reverse();
          c.stages = 0;
          ReverseModel<D> bad(c, rng);
        }).find("stage") != std::string::npos);
}

TEST_CASE("target_index spreads the stages over the forward blocks and ends at x0") {
  ReverseConfig c;
  c.stages = 4;
  CHECK(c.target_index(0, 8) == 6);
  CHECK(c.target_index(1, 8) == 4);
  CHECK(c.target_index(3, 8) == 0);
  c.stages = 8;
  for (long j = 0; j < 8; ++j) CHECK(c.target_index(j, 8) == 7 - j);
  c.stages = 3;
  CHECK(c.target_index(0, 8) == 5);
  CHECK(c.target_index(2, 8) == 0);
}

// ---- distances ---------------------------------------------------------------------------------------------

namespace {
template <class Dist>
void check_distance(const Dist& d, const Tensor<D>& a, const Tensor<D>& b) {
  Rng rng(3);
  const HostMatrix<double> w = testing::detail::random_host<double>(a.rows(), 1, rng);
  auto loss_at = [&](const Tensor<D>& aa) { return double((to_host(d.per_row(aa, b)).array() * w.array()).sum()); };
  const HostMatrix<double> g = to_host(d.grad(a, b, from_host<D>(w)));
  CAPTURE(d.name());
  CHECK(testing::detail::input_grad_error(a, g, loss_at, 1e-6) < 1e-6);
}
}  // namespace

TEST_CASE("distances: values match their definitions and gradients match finite differences") {
  const Tensor<D> a = randn<D>(4, 5, 1), b = randn<D>(4, 5, 2);
  const HostMatrix<double> ah = to_host(a), bh = to_host(b);
  const HostMatrix<double> diff = ah - bh;
  CHECK(std::abs(to_host(Mse{}.per_row(a, b))(1, 0) - diff.row(1).squaredNorm() / 5) < 1e-12);
  CHECK(std::abs(to_host(L1{}.per_row(a, b))(2, 0) - diff.row(2).cwiseAbs().sum() / 5) < 1e-12);
  const double cosv = ah.row(0).dot(bh.row(0)) / (ah.row(0).norm() * bh.row(0).norm());
  CHECK(std::abs(to_host(Cosine{}.per_row(a, b))(0, 0) - (1 - cosv)) < 1e-12);
  double hub = 0;
  for (long j = 0; j < 5; ++j) {
    const double r = std::abs(diff(3, j));
    hub += r <= 0.5 ? 0.5 * r * r : 0.5 * (r - 0.25);
  }
  CHECK(std::abs(to_host(Huber{0.5}.per_row(a, b))(3, 0) - hub / 5) < 1e-12);
  check_distance(Mse{}, a, b);
  check_distance(L1{}, a, b);
  check_distance(Huber{0.5}, a, b);
  check_distance(Cosine{}, a, b);
  check_distance(Sum<Mse, Cosine>{{}, {}, 1.0, 0.3}, a, b);
  CHECK(to_host(Mse{}.per_row(a, a)).maxCoeff() == 0.0);
  CHECK(to_host(Cosine{}.per_row(a, zip(fn::Scale{3.0}, a))).cwiseAbs().maxCoeff() < 1e-12);  // scale-blind
}

TEST_CASE("adaptive reweighting scales each row's gradient by 1/(D + c)^p and reports D unchanged") {
  const Tensor<D> a = randn<D>(3, 4, 1), b = randn<D>(3, 4, 2);
  const Adaptive<Mse> ad{{}, 0.75, 0.1};
  const HostMatrix<double> dv = to_host(Mse{}.per_row(a, b));
  CHECK(max_abs(to_host(ad.per_row(a, b)), dv) == 0.0);
  const Tensor<D> ones = constant<D>(3, 1, 1.0);
  const HostMatrix<double> g = to_host(ad.grad(a, b, ones)), g0 = to_host(Mse{}.grad(a, b, ones));
  for (long r = 0; r < 3; ++r) CHECK(max_abs(g.row(r), g0.row(r) / std::pow(dv(r, 0) + 0.1, 0.75)) < 1e-12);
}

TEST_CASE("feature distance compares in the network's feature space; its gradient flows through the network") {
  Rng rng(4);
  MlpFeatures<D> net({5, 7, 6}, rng);
  const Tensor<D> a = randn<D>(3, 5, 1), b = randn<D>(3, 5, 2);
  const Feature<MlpFeatures<D>, Mse> fd{&net};
  typename MlpFeatures<D>::Context c1, c2;
  CHECK(max_abs(to_host(fd.per_row(a, b)), to_host(Mse{}.per_row(net.forward(a, c1), net.forward(b, c2)))) < 1e-14);
  check_distance(fd, a, b);
  check_distance(Sum<Mse, Feature<MlpFeatures<D>, Cosine>>{{}, {&net}, 1.0, 0.5}, a, b);
  CHECK(message<usage_error>([&] { Feature<MlpFeatures<D>>{}.per_row(a, b); }).find("no network") != std::string::npos);
  CHECK(message<shape_error>([&] { fd.per_row(a, randn<D>(2, 5, 1)); }).find("target") != std::string::npos);
}

TEST_CASE("AnyDistance holds a distance chosen at run time and gives exactly its values and gradients") {
  Rng rng(5);
  MlpFeatures<D> net({5, 7, 6}, rng);
  const Tensor<D> a = randn<D>(3, 5, 1), b = randn<D>(3, 5, 2), w = randn<D>(3, 1, 3);
  const Sum<Mse, Feature<MlpFeatures<D>, Cosine>> direct{{}, {&net}, 1.0, 0.5};
  for (const bool use_l1 : {false, true}) {
    const AnyDistance<D> any = use_l1 ? AnyDistance<D>(L1{}) : AnyDistance<D>(direct);
    const HostMatrix<double> v = use_l1 ? to_host(L1{}.per_row(a, b)) : to_host(direct.per_row(a, b));
    const HostMatrix<double> g = use_l1 ? to_host(L1{}.grad(a, b, w)) : to_host(direct.grad(a, b, w));
    CHECK(any.name() == (use_l1 ? "l1" : "mse+feature(cosine)"));
    CHECK(max_abs(to_host(any.per_row(a, b)), v) == 0.0);
    CHECK(max_abs(to_host(any.grad(a, b, w)), g) == 0.0);
  }
  // It is a distance itself: it composes (Adaptive<AnyDistance>) and passes the finite-difference check.
  const AnyDistance<D> any = direct;
  check_distance(any, a, b);
  const Adaptive<AnyDistance<D>> ad{any, 0.5, 1e-3};
  const Adaptive<Sum<Mse, Feature<MlpFeatures<D>, Cosine>>> ad_direct{direct, 0.5, 1e-3};
  CHECK(max_abs(to_host(ad.grad(a, b, w)), to_host(ad_direct.grad(a, b, w))) == 0.0);
  CHECK(message<usage_error>([&] { AnyDistance<D>{}.per_row(a, b); }).find("no distance was assigned") !=
        std::string::npos);
}

TEST_CASE("distance_loss is the batch mean and its gradient is scaled by weight / N") {
  const Tensor<D> a = randn<D>(4, 3, 1), b = randn<D>(4, 3, 2);
  Tensor<D> g;
  const double l = distance_loss(Mse{}, a, b, 2.0, g);
  CHECK(std::abs(l - to_host(Mse{}.per_row(a, b)).mean()) < 1e-12);
  CHECK(max_abs(to_host(g), (to_host(a) - to_host(b)) * (2.0 * 2.0 / 3.0 / 4.0)) < 1e-12);
}

// ---- strategies: exact inverse by construction -------------------------------------------------------------

namespace {
// F = LU-linear, ActNorm, LU-linear, ActNorm on 3-d vectors: every trajectory state is an affine function of z,
// so a reverse model with identity stages and linear maps set by hand is F's exact inverse.
using AffineFlow = Sequential<LULinear<D>, ActNorm<D>, LULinear<D>, ActNorm<D>>;

AffineFlow affine_flow() {
  Rng rng(21);
  AffineFlow f(LULinear<D>(3, rng), ActNorm<D>(3), LULinear<D>(3, rng), ActNorm<D>(3));
  randomize(f, 22, 0.4);
  return f;
}
/// State i as an affine map of z: x^i = M_i z + c_i, found by evaluating the trajectory at 0 and the basis.
std::vector<std::pair<HostMatrix<double>, HostMatrix<double>>> affine_states(const AffineFlow& f) {
  HostMatrix<double> pts = HostMatrix<double>::Zero(4, 3);
  for (int k = 0; k < 3; ++k) pts(k + 1, k) = 1.0;
  typename AffineFlow::Context c;
  const Trajectory<D> t = f.forward_trajectory(from_host<D>(pts), c);
  std::vector<std::pair<HostMatrix<double>, HostMatrix<double>>> pc;  // P_i (x -> x^i), q_i
  for (const auto& s : t.states) {
    const HostMatrix<double> h = to_host(s);
    HostMatrix<double> P(3, 3);
    for (int k = 0; k < 3; ++k) P.col(k) = (h.row(k + 1) - h.row(0)).transpose();
    pc.push_back({P, h.row(0).transpose()});
  }
  const HostMatrix<double> Pz_inv = pc.back().first.inverse();
  const HostMatrix<double> qz = pc.back().second;
  std::vector<std::pair<HostMatrix<double>, HostMatrix<double>>> out;
  for (const auto& [P, q] : pc) out.push_back({P * Pz_inv, q - P * Pz_inv * qz});
  return out;
}
void set_linear(Linear<D>& l, const HostMatrix<double>& M, const HostMatrix<double>& c) {
  l.weight.value = from_host<D>(M);  // y = x Mᵀ + c
  l.bias.value = from_host<D>(HostMatrix<double>(c.transpose()));
}
ReverseConfig affine_reverse(bool bottleneck) {
  ReverseConfig c;
  c.tokens = 1;
  c.token_dim = 3;
  c.width = 3;
  c.stages = 4;
  c.layers = 1;
  c.bottleneck = bottleneck;
  return c;
}
/// G with identity stages (residual blocks whose last layer is zero) and hand-set linear maps.
ReverseModel<D, MlpStage> exact_reverse(const AffineFlow& f, bool bottleneck) {
  Rng rng(3);
  ReverseModel<D, MlpStage> g(affine_reverse(bottleneck), rng);
  const auto st = affine_states(f);  // st[i]: z -> x^i
  const HostMatrix<double> I = HostMatrix<double>::Identity(3, 3), Z = HostMatrix<double>::Zero(3, 1);
  for (auto& s : g.stages)
    for (auto& m : s.mlps) m.zero_last();
  set_zero(g.pos_embed.value);
  set_linear(g.proj_in, I, Z);
  const ReverseConfig& c = g.config();
  if (!bottleneck) {
    set_linear(g.proj_out, st[0].first, st[0].second);
  } else {
    for (long j = 0; j < 4; ++j) {  // stage j reads out x^{i_j}; the next stage re-embeds it as z
      const auto& [M, q] = st[std::size_t(c.target_index(j, 4))];
      set_linear(g.readouts[std::size_t(j)], M, q);
      if (j + 1 < 4) {
        const HostMatrix<double> Mi = M.inverse();
        set_linear(g.embeds[std::size_t(j + 1)], Mi, HostMatrix<double>(-Mi * q));
      }
    }
  }
  return g;
}
template <class Strategy, class G>
double strategy_loss(const AffineFlow& f, G& g, Strategy& s) {
  ReverseTrainOptions o;
  ReverseTrainer<AffineFlow, G, Strategy> tr(f, g, s, o);
  Rng rng(5);
  const Tensor<D> x = randn<D>(6, 3, 8);
  const ReverseTargets<D> t = tr.targets(x, {}, rng);
  typename G::Context c;
  const Tensor<D> out = g.forward(t.z, {}, {}, c);
  std::vector<Tensor<D>> dh;
  Tensor<D> dout;
  return s.hidden_loss(g.config(), c.hidden, t.hidden, Mse{}, {}, dh) + distance_loss(Mse{}, out, t.output, 1.0, dout);
}
}  // namespace

TEST_CASE("every strategy's loss is zero when G is an exact inverse by construction, and positive otherwise") {
  const AffineFlow f = affine_flow();
  {
    auto g = exact_reverse(f, false);
    NaiveDistillation naive;
    CHECK(strategy_loss(f, g, naive) < 1e-20);
    Rng rng(1);
    HiddenAlignment<D> align(g.config(), rng, false);
    const auto st = affine_states(f);
    for (long j = 0; j < 3; ++j) {
      const auto& [M, q] = st[std::size_t(g.config().target_index(j, 4))];
      set_linear(align.heads[std::size_t(j)].proj, M, q);
    }
    CHECK(strategy_loss(f, g, align) < 1e-20);
    HiddenAlignment<D> untrained(g.config(), rng, false);
    CHECK(strategy_loss(f, g, untrained) > 1e-3);  // the heads are not yet aligned
    auto off = g;
    HostMatrix<double> w = to_host(off.proj_out.weight.value);
    w(0, 1) += 0.1;
    off.proj_out.weight.value = from_host<D>(w);
    CHECK(strategy_loss(f, off, naive) > 1e-5);
  }
  {
    auto g = exact_reverse(f, true);
    HiddenDistillation hd;
    CHECK(strategy_loss(f, g, hd) < 1e-20);
    auto off = g;
    HostMatrix<double> b = to_host(off.readouts[1].bias.value);
    b(0, 2) += 0.1;
    off.readouts[1].bias.value = from_host<D>(b);
    CHECK(strategy_loss(f, off, hd) > 1e-5);
  }
  // and the exact reverse model really inverts F
  auto g = exact_reverse(f, false);
  const Tensor<D> x = randn<D>(5, 3, 9);
  CHECK(max_abs(to_host(BiFlow{f, g}.reconstruct(x)), to_host(x)) < 1e-10);
}

TEST_CASE("hidden alignment heads: loss gradients match finite differences (with and without normalisation)") {
  for (bool norm : {true, false}) {
    CAPTURE(norm);
    const ReverseConfig c = tiny_reverse();
    Rng rng(8);
    HiddenAlignment<D> s(c, rng, norm);
    randomize(s, 9);
    const std::vector<Tensor<D>> hidden{randn<D>(3 * 4, 8, 1)};
    const std::vector<Tensor<D>> targets{randn<D>(3, 8, 2)};
    std::vector<Tensor<D>> dh;
    zero_grad(s);
    s.hidden_loss(c, hidden, targets, Huber{0.3}, {2.0}, dh);
    const auto pg = testing::detail::grads_of(s);
    auto loss_at = [&](const Tensor<D>& h) {
      std::vector<Tensor<D>> d2;
      HiddenAlignment<D> s2 = s;
      return s2.hidden_loss(c, std::vector<Tensor<D>>{h}, targets, Huber{0.3}, {2.0}, d2);
    };
    CHECK(testing::detail::input_grad_error(hidden[0], to_host(dh[0]), loss_at, 1e-6) < 1e-6);
    testing::CheckReport rep;
    testing::detail::check_param_grads(s, pg, [&] { return loss_at(hidden[0]); }, testing::CheckOptions{}, rep);
    CHECK(rep.param_grad_error < 1e-6);
  }
}

TEST_CASE("strategies and the trainer reject mismatched set-ups with a sentence naming the fix") {
  const AffineFlow f = affine_flow();
  auto g = exact_reverse(f, false);
  HiddenDistillation hd;
  ReverseTrainOptions o;
  using G = decltype(g);
  CHECK(message<usage_error>([&] { ReverseTrainer<AffineFlow, G, HiddenDistillation>(f, g, hd, o); })
            .find("bottleneck") != std::string::npos);
  NaiveDistillation nv;
  ReverseTrainOptions on = o;
  on.guidance_max = 2.0;
  CHECK(message<usage_error>([&] { ReverseTrainer<AffineFlow, G, NaiveDistillation>(f, g, nv, on); })
            .find("guidance") != std::string::npos);
  ReverseConfig dc = affine_reverse(false);
  dc.denoise_stage = true;
  Rng rng(1);
  ReverseModel<D, MlpStage> gd(dc, rng);
  CHECK(message<usage_error>([&] { ReverseTrainer<AffineFlow, G, NaiveDistillation>(f, gd, nv, o); })
            .find("noise") != std::string::npos);
  HiddenAlignment<D> other(tiny_reverse(), rng);
  CHECK(message<usage_error>([&] { ReverseTrainer<AffineFlow, G, HiddenAlignment<D>>(f, g, other, o); })
            .find("same ReverseConfig") != std::string::npos);
  ReverseTrainOptions ow = o;
  ow.hidden_weights = {1.0};
  CHECK(message<usage_error>([&] { ReverseTrainer<AffineFlow, G, NaiveDistillation>(f, g, nv, ow); })
            .find("hidden weights") != std::string::npos);
}

TEST_CASE("trainer targets: trajectory states per stage, state clipping, learned-denoising targets") {
  const AffineFlow f = affine_flow();
  Rng r0(2);
  const Tensor<D> x = randn<D>(4, 3, 1);
  typename AffineFlow::Context fc;
  const Trajectory<D> tr = f.forward_trajectory(x, fc);
  {
    ReverseModel<D, MlpStage> g(affine_reverse(false), r0);
    NaiveDistillation nv;
    ReverseTrainOptions o;
    o.state_clip = 0.2;
    ReverseTrainer<AffineFlow, decltype(g), NaiveDistillation> t(f, g, nv, o);
    Rng rng(1);
    const auto tg = t.targets(x, {}, rng);
    CHECK(max_abs(to_host(tg.z), to_host(tr.states[4])) == 0.0);  // the input is never clipped
    REQUIRE(tg.hidden.size() == 3);
    CHECK(to_host(tg.hidden[0]).cwiseAbs().maxCoeff() <= 0.2);  // x^3, clipped
    CHECK(max_abs(to_host(tg.output), to_host(tr.states[0])) == 0.0);
  }
  {
    ReverseConfig c = affine_reverse(false);
    c.denoise_stage = true;
    ReverseModel<D, MlpStage> g(c, r0);
    NaiveDistillation nv;
    ReverseTrainOptions o;
    o.noise = 0.1;
    ReverseTrainer<AffineFlow, decltype(g), NaiveDistillation> t(f, g, nv, o);
    Rng rng(1);
    const auto tg = t.targets(x, {}, rng);
    REQUIRE(tg.hidden.size() == 4);
    CHECK(max_abs(to_host(tg.output), to_host(x)) == 0.0);  // clean data
    const double d = max_abs(to_host(tg.hidden[3]), to_host(x));  // x̃ = x + σε
    CHECK(d > 0.01);
    CHECK(d < 1.0);
  }
}

TEST_CASE("trainer targets under data parallelism: a shard's noisy targets are its rows of the global batch's, and "
          "the Rng ends where the one-process step leaves it") {
  const AffineFlow f = affine_flow();
  Rng r0(2);
  ReverseConfig c = affine_reverse(false);
  c.denoise_stage = true;
  ReverseModel<D, MlpStage> g(c, r0);
  NaiveDistillation nv;
  ReverseTrainOptions o;
  o.noise = 0.1;
  ReverseTrainer<AffineFlow, decltype(g), NaiveDistillation> t(f, g, nv, o);
  const Tensor<D> x = randn<D>(8, 3, 4);
  Rng whole_rng(7), shard_rng(7);
  const auto whole = t.targets(x, {}, whole_rng);
  const auto part = t.targets(slice_rows(x, 4, 4), {}, shard_rng, BatchRows{4, 8});  // rows 4..7 of 8
  REQUIRE(part.hidden.size() == whole.hidden.size());
  CHECK(max_abs(to_host(part.z), to_host(slice_rows(whole.z, 4, 4))) < 1e-14);
  for (std::size_t i = 0; i < part.hidden.size(); ++i)
    CHECK(max_abs(to_host(part.hidden[i]), to_host(slice_rows(whole.hidden[i], 4, 4))) < 1e-14);
  CHECK(whole_rng.uniform() == shard_rng.uniform());  // both drew the global batch's noise
  CHECK(message<usage_error>([&] { t.targets(x, {}, shard_rng, BatchRows{4, 8}); }).find("not inside a global batch") !=
        std::string::npos);
}

namespace {
/// Rank 0 of 2 whose peer contributes zeros: every mean over the two ranks is half the local value.
struct ZeroPeer {
  int rank() const { return 0; }
  int size() const { return 2; }
  template <class T>
  void all_reduce(T* p, long n, dist::Reduce op) {
    for (long i = 0; i < n; ++i) p[i] = op == dist::Reduce::mean ? p[i] / 2 : p[i];
  }
  template <class T>
  void broadcast(T*, long, int) {}
  void barrier() {}
};
}  // namespace

TEST_CASE("data-parallel ReverseTrainer reports global means: the loss, the output and hidden losses and each hidden "
          "term are averaged over ranks with the gradients") {
  const AffineFlow f = affine_flow();
  auto run = [&](bool parallel) {
    Rng r0(2);
    const ReverseConfig c = affine_reverse(false);
    ReverseModel<D, MlpStage> g(c, r0);
    HiddenAlignment<D> s(c, r0);
    ReverseTrainer<AffineFlow, decltype(g), HiddenAlignment<D>> t(f, g, s, ReverseTrainOptions{});
    ZeroPeer peer;
    if (parallel) dist::reduce_gradients(t.optimization(), peer);
    Rng rng(5);
    return t.step(randn<D>(16, 3, 4), {}, rng);
  };
  const ReverseStepResult one = run(false), two = run(true);
  REQUIRE(one.hidden_terms.size() >= 2);
  REQUIRE(one.hidden_loss > 0);
  CHECK(two.loss == doctest::Approx(one.loss / 2).epsilon(1e-12));
  CHECK(two.output_loss == doctest::Approx(one.output_loss / 2).epsilon(1e-12));
  CHECK(two.hidden_loss == doctest::Approx(one.hidden_loss / 2).epsilon(1e-12));
  REQUIRE(two.hidden_terms.size() == one.hidden_terms.size());
  for (std::size_t i = 0; i < one.hidden_terms.size(); ++i)
    CHECK(two.hidden_terms[i] == doctest::Approx(one.hidden_terms[i] / 2).epsilon(1e-12));
}

TEST_CASE("training G on a MAF's trajectory learns its inverse (reconstruction error falls 20x)") {
  Rng rng(3);
  using Maf = MaskedAutoregressive<D>;
  using Flow = Sequential<Maf, Permutation<D>, Maf>;
  Flow f(Maf(2, {16}, rng), Permutation<D>::reverse(2), Maf(2, {16}, rng));
  randomize(f, 4, 0.3);
  ReverseConfig c;
  c.tokens = 1;
  c.token_dim = 2;
  c.width = 32;
  c.stages = 3;
  c.layers = 1;
  ReverseModel<D, MlpStage> g(c, rng);
  HiddenAlignment<D> s(c, rng);
  ReverseTrainOptions o;
  o.optim.lr = 3e-3;
  o.optim.warmup = 20;
  o.optim.total_steps = 400;
  ReverseTrainer<Flow, decltype(g), HiddenAlignment<D>> t(f, g, s, o);
  const Tensor<D> test = from_host<D>(data::toy("moons", 256, rng));
  auto recon = [&] { return (to_host(BiFlow{f, g}.reconstruct(test)) - to_host(test)).squaredNorm() / 512.0; };
  const double before = recon();
  for (int i = 0; i < 400; ++i) t.step(from_host<D>(data::toy("moons", 128, rng)), {}, rng);
  const double after = recon();
  CAPTURE(before);
  CAPTURE(after);
  CHECK(after < before / 20);
  CHECK(t.skipped_steps() == 0);
}

TEST_CASE("training-time CFG rows: null-label rows never get a guidance scale; the share follows the option") {
  Rng rng(1);
  ReverseConfig c = affine_reverse(false);
  const AffineFlow f = affine_flow();
  (void)c;
  // A conditional toy flow is not needed to check the draw: use TarFlow's smallest shape.
  TarFlowConfig tc;
  tc.image = {1, 4, 4, 2, PatchOrder::channel_major};
  tc.width = 8;
  tc.blocks = 2;
  tc.layers = 1;
  tc.heads = 2;
  tc.num_classes = 3;
  TarFlow<D> tf(tc, rng);
  ReverseConfig rc;
  rc.tokens = 4;
  rc.token_dim = 4;
  rc.width = 8;
  rc.stages = 2;
  rc.heads = 2;
  rc.cond_features = 4;
  rc.guidance = true;
  ReverseModel<D> g(rc, rng);
  NaiveDistillation nv;
  ReverseTrainOptions o;
  o.guidance_max = 3.0;
  o.guidance_fraction = 0.5;
  ReverseTrainer<TarFlow<D>, ReverseModel<D>, NaiveDistillation> t(tf, g, nv, o);
  std::vector<int> labels(400);
  for (int i = 0; i < 400; ++i) labels[std::size_t(i)] = i % 4;  // label 3 = null
  const Tensor<D> cond = cond_rows(labels, 4);
  const auto tg = t.targets(randn<D>(400, 16, 2), cond, rng);
  const HostMatrix<double> w = to_host(tg.w);
  long guided = 0;
  for (int i = 0; i < 400; ++i) {
    if (labels[std::size_t(i)] == 3) CHECK(w(i, 0) == 0.0);
    CHECK(w(i, 0) >= 0.0);
    CHECK(w(i, 0) <= 3.0);
    guided += w(i, 0) > 0;
  }
  CHECK(guided > 110);  // expected 150 of the 300 conditional rows
  CHECK(guided < 190);
  const auto r = t.step(randn<D>(32, 16, 3), slice_rows(cond, 0, 32), rng);
  CHECK(std::isfinite(r.loss));
}

// ---- evaluation helpers ------------------------------------------------------------------------------------

TEST_CASE("Frechet distance: zero for the same set, |Δμ|² for a shifted copy, the closed form for 1-d Gaussians") {
  Rng rng(1);
  const HostMatrix<double> a = to_host(randn<D>(500, 3, 2));
  CHECK(std::abs(frechet_distance(a, a)) < 1e-9);
  HostMatrix<double> b = a;
  b.col(1).array() += 2.0;
  CHECK(std::abs(frechet_distance(a, b) - 4.0) < 1e-9);
  const GaussianFit g1{Eigen::VectorXd::Constant(1, 0.0), Eigen::MatrixXd::Constant(1, 1, 4.0)};
  const GaussianFit g2{Eigen::VectorXd::Constant(1, 1.0), Eigen::MatrixXd::Constant(1, 1, 1.0)};
  CHECK(std::abs(frechet_distance(g1, g2) - (1.0 + 4.0 + 1.0 - 2.0 * 2.0)) < 1e-12);  // (σ1 − σ2)² + Δμ²
  CHECK(message<shape_error>([&] { frechet_distance(a, HostMatrix<double>(a.leftCols(2))); }).find("3 vs 2") !=
        std::string::npos);
}

TEST_CASE("softmax cross-entropy: value and gradient match finite differences") {
  const Tensor<D> logits = randn<D>(4, 3, 1), t = cond_rows({0, 2, 1, 1}, 3);
  Tensor<D> g;
  const double l = softmax_cross_entropy(logits, t, g);
  const HostMatrix<double> lh = to_host(logits);
  double ref = 0;
  const int lab[] = {0, 2, 1, 1};
  for (int r = 0; r < 4; ++r) ref -= lh(r, lab[r]) - std::log(lh.row(r).array().exp().sum());
  CHECK(std::abs(l - ref / 4) < 1e-12);
  auto loss_at = [&](const Tensor<D>& x) {
    Tensor<D> d;
    return softmax_cross_entropy(x, t, d);
  };
  CHECK(testing::detail::input_grad_error(logits, to_host(g), loss_at, 1e-6) < 1e-6);
}

TEST_CASE("MlpClassifier learns separable classes and its features are the penultimate activations") {
  Rng rng(2);
  MlpClassifier<D> clf({2, 16, 8, 2}, rng);
  TrainOptions o;
  o.lr = 1e-2;
  o.warmup = 0;
  o.total_steps = 1000000;  // ~constant learning rate over 200 steps
  Optimization<D> opt(o);
  std::vector<int> labels;
  HostMatrix<double> x(200, 2);
  for (int i = 0; i < 200; ++i) {
    labels.push_back(i % 2);
    x(i, 0) = (i % 2 ? 1.0 : -1.0) + 0.3 * rng.normal();
    x(i, 1) = 0.3 * rng.normal();
  }
  const Tensor<D> xt = from_host<D>(x), yt = cond_rows(labels, 2);
  for (int s = 0; s < 200; ++s) clf.train_step(xt, yt, opt);
  CHECK(clf.accuracy(xt, labels) > 0.95);
  CHECK(clf.feature_rows(xt).cols() == 8);
  CHECK(to_host(clf.feature_rows(xt)).minCoeff() >= 0.0);
}
