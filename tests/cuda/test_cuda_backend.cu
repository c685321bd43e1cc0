// Cuda backend vs Cpu<float>: every primitive and every flow layer / module (forward, backward, inverse,
// parameter gradients) and a full training step. Exits 77 ("skipped: no CUDA device") without a GPU,
// which CTest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <biflow/biflow.hpp>
#include <cstdio>
#include <vector>

using namespace biflow;
using C = Cpu<float>;
using G = Cuda<float>;

namespace {
constexpr float kTol = 2e-4f;  // float, different summation orders (cuBLAS vs Eigen)

double max_rel(const HostMatrix<float>& a, const HostMatrix<float>& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  double m = 0;
  for (long i = 0; i < a.size(); ++i)
    m = std::max(m, double(std::abs(a.data()[i] - b.data()[i])) / std::max(1.0, double(std::abs(a.data()[i]))));
  return m;
}
template <class B>
Tensor<B> randn(long r, long c, std::uint64_t seed) {
  Rng rng(seed);
  Tensor<B> t(r, c);
  fill_normal(t, rng);
  return t;
}
template <class M>
std::vector<HostMatrix<float>> grads(M& m) {
  std::vector<HostMatrix<float>> g;
  m.visit_parameters([&](const std::string&, auto& p) { g.push_back(to_host(p.grad)); }, "");
  return g;
}
template <class M>
std::vector<HostMatrix<float>> values(M& m) {
  std::vector<HostMatrix<float>> g;
  m.visit_parameters([&](const std::string&, auto& p) { g.push_back(to_host(p.value)); }, "");
  return g;
}
template <class M>
void randomize(M& m, std::uint64_t seed) {
  Rng rng(seed);
  m.visit_parameters([&](const std::string&, auto& p) { fill_normal(p.value, rng, 0.0f, 0.3f); }, "");
}

/// Builds the same layer on both backends (same seed => same parameters) and compares everything.
template <class Make>
void compare_flow_layer(Make make, long rows, long d, long cond) {
  auto lc = make.template operator()<C>();
  auto lg = make.template operator()<G>();
  randomize(lc, 5);
  randomize(lg, 5);
  const auto xc = randn<C>(rows, d, 6), dyc = randn<C>(rows, d, 7), dlc = randn<C>(rows, 1, 8);
  const auto cc = cond ? randn<C>(rows, cond, 9) : Tensor<C>{};
  const auto xg = randn<G>(rows, d, 6), dyg = randn<G>(rows, d, 7), dlg = randn<G>(rows, 1, 8);
  const auto cg = cond ? randn<G>(rows, cond, 9) : Tensor<G>{};
  // Same counter-based streams on both backends (device and host libm may differ in the last double ulp).
  CHECK(max_rel(to_host(xc), to_host(xg)) < 1e-6);
  typename decltype(lc)::Context ctxc;
  typename decltype(lg)::Context ctxg;
  const auto oc = lc.forward(xc, ctxc, cc);
  const auto og = lg.forward(xg, ctxg, cg);
  CHECK(max_rel(to_host(oc.y), to_host(og.y)) < kTol);
  CHECK(max_rel(to_host(oc.logdet), to_host(og.logdet)) < kTol);
  zero_grad(lc);
  zero_grad(lg);
  CHECK(max_rel(to_host(lc.backward(ctxc, dyc, dlc)), to_host(lg.backward(ctxg, dyg, dlg))) < kTol);
  const auto gc = grads(lc);
  const auto gg = grads(lg);
  REQUIRE(gc.size() == gg.size());
  for (std::size_t i = 0; i < gc.size(); ++i) CHECK(max_rel(gc[i], gg[i]) < 1e-3);
  const auto ic = lc.inverse(oc.y, cc);
  const auto ig = lg.inverse(og.y, cg);
  CHECK(max_rel(to_host(ic.y), to_host(ig.y)) < kTol);
  CHECK(max_rel(to_host(ic.logdet), to_host(ig.logdet)) < kTol);
  CHECK(max_rel(to_host(ig.y), to_host(xg)) < 1e-4);  // round trip on the GPU
}

template <class Make>
void compare_module(Make make, long rows, long in) {
  auto mc = make.template operator()<C>();
  auto mg = make.template operator()<G>();
  const auto xc = randn<C>(rows, in, 16);
  const auto xg = randn<G>(rows, in, 16);
  typename decltype(mc)::Context cc;
  typename decltype(mg)::Context cg;
  const auto yc = mc.forward(xc, cc);
  const auto yg = mg.forward(xg, cg);
  CHECK(max_rel(to_host(yc), to_host(yg)) < kTol);
  const auto dyc = randn<C>(yc.rows(), yc.cols(), 17);
  const auto dyg = randn<G>(yg.rows(), yg.cols(), 17);
  zero_grad(mc);
  zero_grad(mg);
  CHECK(max_rel(to_host(mc.backward(cc, dyc)), to_host(mg.backward(cg, dyg))) < kTol);
  const auto gc = grads(mc);
  const auto gg = grads(mg);
  for (std::size_t i = 0; i < gc.size(); ++i) CHECK(max_rel(gc[i], gg[i]) < 1e-3);
}
}  // namespace

TEST_CASE("cuda gemm matches Eigen for every transpose combination, with and without accumulation") {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const long m = 37, k = 19, n = 23;
      const Tensor<C> ac = randn<C>(ta ? k : m, ta ? m : k, 1), bc = randn<C>(tb ? n : k, tb ? k : n, 2);
      const Tensor<G> ag = randn<G>(ta ? k : m, ta ? m : k, 1), bg = randn<G>(tb ? n : k, tb ? k : n, 2);
      Tensor<C> cc = randn<C>(m, n, 3);
      Tensor<G> cg = randn<G>(m, n, 3);
      gemm(ac, ta, bc, tb, cc, 0.5f, 2.0f);
      gemm(ag, ta, bg, tb, cg, 0.5f, 2.0f);
      CHECK(max_rel(to_host(cc), to_host(cg)) < kTol);
      CHECK(max_rel(to_host(matmul(ac, ta, bc, tb)), to_host(matmul(ag, ta, bg, tb))) < kTol);
    }
}

TEST_CASE("cuda elementwise, reductions, slicing, gathers and RNG match Cpu") {
  const Tensor<C> xc = randn<C>(33, 7, 1), yc = randn<C>(1, 7, 2), zc = randn<C>(33, 1, 3);
  const Tensor<G> xg = randn<G>(33, 7, 1), yg = randn<G>(1, 7, 2), zg = randn<G>(33, 1, 3);
  CHECK(max_rel(to_host(zip(fn::AddMul{}, xc, yc, zc)), to_host(zip(fn::AddMul{}, xg, yg, zg))) < 1e-6);
  CHECK(max_rel(to_host(row_sum(xc)), to_host(row_sum(xg))) < 1e-5);
  Tensor<C> sc = randn<C>(1, 7, 4);
  Tensor<G> sg = randn<G>(1, 7, 4);
  col_sum(xc, sc, 1.0f);
  col_sum(xg, sg, 1.0f);
  CHECK(max_rel(to_host(sc), to_host(sg)) < 1e-5);
  CHECK(sum(xg) == doctest::Approx(sum(xc)).epsilon(1e-4));
  CHECK(sum_sq(xg) == doctest::Approx(sum_sq(xc)).epsilon(1e-4));
  CHECK(all_finite(xg));
  CHECK(max_rel(to_host(slice_cols(xc, 2, 3)), to_host(slice_cols(xg, 2, 3))) == 0.0);
  CHECK(max_rel(to_host(concat_cols(xc, zc)), to_host(concat_cols(xg, zg))) == 0.0);
  const std::vector<std::int32_t> idx{6, 0, 3, 3, 1};
  CHECK(max_rel(to_host(gather_cols(xc, make_indices<C>(idx))), to_host(gather_cols(xg, make_indices<G>(idx)))) == 0.0);
  Tensor<C> a(2, 2);
  Tensor<G> b(2, 2);
  fill(a, 3.5f);
  fill(b, 3.5f);
  CHECK(max_rel(to_host(a), to_host(b)) == 0.0);
  Rng r1(9), r2(9);
  Tensor<C> uc(100, 3);
  Tensor<G> ug(100, 3);
  fill_uniform(uc, r1, -1.0f, 2.0f);
  fill_uniform(ug, r2, -1.0f, 2.0f);
  CHECK(max_rel(to_host(uc), to_host(ug)) < 1e-6);
  CHECK(r1.counter() == r2.counter());
  auto m = randn<G>(4, 4, 10);
  const auto mi = inverse(m);
  const HostMatrix<float> eye = to_host(matmul(m, false, mi, false));
  CHECK((eye - HostMatrix<float>::Identity(4, 4)).cwiseAbs().maxCoeff() < 1e-4);
  HostMatrix<float> bad = HostMatrix<float>::Zero(2, 2);
  bad(1, 1) = std::nanf("");
  CHECK_FALSE(all_finite(from_host<G>(bad)));
  Tensor<G> out;
  CHECK_THROWS_AS(gemm(xg, false, xg, false, out), shape_error);
}

TEST_CASE("cuda nn modules match Cpu: Linear, MaskedLinear, activations, MLP, LayerNorm") {
  compare_module([]<class B>() { Rng r(1); return Linear<B>(5, 4, r); }, 9, 5);
  compare_module([]<class B>() { Rng r(2); return MLP<B, act::GELU>({5, 16, 3}, r); }, 9, 5);
  compare_module([]<class B>() { Rng r(3); return MLP<B, act::SiLU>({5, 8, 8, 3}, r); }, 9, 5);
  compare_module([]<class B>() { Rng r(4); return MLP<B, act::Tanh>({5, 8, 3}, r); }, 9, 5);
  compare_module([]<class B>() { LayerNorm<B> ln(6); randomize(ln, 3); return ln; }, 9, 6);
  compare_module([]<class B>() {
    Rng r(5);
    MaskedLinear<B> m(4, 3, r);
    HostMatrix<float> mask = HostMatrix<float>::Ones(3, 4);
    mask(0, 1) = 0;
    m.set_mask(from_host<B>(mask));
    return m;
  }, 9, 4);
}

TEST_CASE("cuda flow layers match Cpu: coupling, MAF, permutations, LU linear, ActNorm, compositions") {
  compare_flow_layer([]<class B>() { Rng r(1); return make_coupling<B>(masks::half(6, 1), {16, 16}, r); }, 17, 6, 0);
  compare_flow_layer([]<class B>() { Rng r(2); return make_coupling<B>(masks::alternating(6, 0), {16}, r, 3); }, 17, 6, 3);
  compare_flow_layer([]<class B>() { Rng r(3); return MaskedAutoregressive<B>(6, {24, 24}, r); }, 17, 6, 0);
  compare_flow_layer([]<class B>() { Rng r(4); return MaskedAutoregressive<B>(6, {24}, r, 2); }, 17, 6, 2);
  compare_flow_layer([]<class B>() { Rng r(5); return Permutation<B>::random(6, r); }, 17, 6, 0);
  compare_flow_layer([]<class B>() { Rng r(6); return LULinear<B>(6, r); }, 17, 6, 0);
  compare_flow_layer([]<class B>() { ActNorm<B> a(6); return a; }, 17, 6, 0);
  compare_flow_layer([]<class B>() {
    Rng r(7);
    return Repeat<2, Sequential<MaskedAutoregressive<B>, Permutation<B>>>([&](std::size_t) {
      return Sequential<MaskedAutoregressive<B>, Permutation<B>>(MaskedAutoregressive<B>(6, {16}, r, 2),
                                                                 Permutation<B>::reverse(6));
    });
  }, 17, 6, 2);
}

TEST_CASE("cuda attention primitives match Cpu: batched GEMM, causal softmax, grouped rows, block copies") {
  const Tensor<C> ac = randn<C>(2 * 3 * 4, 6, 1), bc = randn<C>(2 * 3 * 5, 7, 2);
  const Tensor<G> ag = randn<G>(2 * 3 * 4, 6, 1), bg = randn<G>(2 * 3 * 5, 7, 2);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (long outer : {1L, 2L}) {  // both loop orders of the Cuda implementation
        const MatView va = ta ? MatView{1, 4, 3, 6, 3 * 4 * 6, 4 * 6} : MatView{1, 3, 4, 6, 3 * 4 * 6, 4 * 6};
        const MatView vb = tb ? MatView{2, 5, 4, 7, 3 * 5 * 7, 5 * 7} : MatView{2, 4, 5, 7, 3 * 5 * 7, 5 * 7};
        const MatView vc{0, 3, 5, 5, 3 * 3 * 5, 3 * 5};
        Tensor<C> cc = randn<C>(18, 5, 3);
        Tensor<G> cg = randn<G>(18, 5, 3);
        gemm_batched(ac, va, bool(ta), bc, vb, bool(tb), cc, vc, outer, 3, 0.5f, 2.0f);
        gemm_batched(ag, va, bool(ta), bg, vb, bool(tb), cg, vc, outer, 3, 0.5f, 2.0f);
        CHECK(max_rel(to_host(cc), to_host(cg)) < kTol);
      }
  for (bool causal : {true, false}) {
    Tensor<C> sc = randn<C>(12, 4, 4);
    Tensor<G> sg = randn<G>(12, 4, 4);
    softmax_rows(sc, causal);
    softmax_rows(sg, causal);
    CHECK(max_rel(to_host(sc), to_host(sg)) < 1e-5);
    Tensor<C> dc = randn<C>(12, 4, 5);
    Tensor<G> dg = randn<G>(12, 4, 5);
    softmax_rows_backward(sc, dc);
    softmax_rows_backward(sg, dg);
    CHECK(max_rel(to_host(dc), to_host(dg)) < 1e-5);
  }
  Tensor<C> xc = randn<C>(6, 5, 6);
  Tensor<G> xg = randn<G>(6, 5, 6);
  add_repeat_rows(xc, randn<C>(2, 5, 7), 3);
  add_repeat_rows(xg, randn<G>(2, 5, 7), 3);
  CHECK(max_rel(to_host(xc), to_host(xg)) < 1e-6);
  CHECK(max_rel(to_host(sum_row_groups(xc, 3)), to_host(sum_row_groups(xg, 3))) < 1e-6);
  Tensor<C> yc(4, 4);
  Tensor<G> yg(4, 4);
  copy_block(xc, 1, 5, yc, 4, 4, 3, 2);
  copy_block(xg, 1, 5, yg, 4, 4, 3, 2);
  CHECK(max_rel(to_host(yc), to_host(yg)) == 0.0);
  CHECK(max_rel(to_host(concat_rows(xc, randn<C>(1, 5, 8))),
                to_host(concat_rows(xg, randn<G>(1, 5, 8)))) == 0.0);
  CHECK_THROWS_AS(copy_block(xg, 0, 5, yg, 0, 4, 5, 4), shape_error);
}

TEST_CASE("cuda transformer modules match Cpu: attention, transformer layer, embedding, KV-cached steps") {
  compare_module([]<class B>() { Rng r(1); return Attention<B>(8, 2, 3, true, r); }, 9, 8);
  compare_module([]<class B>() { Rng r(2); return Attention<B>(8, 4, 3, false, r); }, 9, 8);
  compare_module([]<class B>() { Rng r(3); TransformerLayer<B> l(8, 2, 3, true, r); randomize(l, 4); return l; }, 9, 8);
  compare_module([]<class B>() { Rng r(5); return Embedding<B>(4, 8, r); }, 9, 4);
  Rng r1(6), r2(6);
  TransformerLayer<C> lc(8, 2, 4, true, r1);
  TransformerLayer<G> lg(8, 2, 4, true, r2);
  KVCache<C> kc;
  KVCache<G> kg;
  for (int t = 0; t < 4; ++t)
    CHECK(max_rel(to_host(lc.step(randn<C>(3, 8, 10 + t), kc)), to_host(lg.step(randn<G>(3, 8, 10 + t), kg))) < kTol);
}

TEST_CASE("cuda TarBlock and TarFlow match Cpu: forward, backward, cached decoding, guidance") {
  compare_flow_layer([]<class B>() {
    Rng r(1);
    return TarBlock<B>({4, 2, 8, 2, 2, 3, 2.0, 2.0}, TarBlock<B>::reversed_order(4), r);
  }, 5, 8, 3);
  auto make = []<class B>() {
    Rng r(2);
    TarFlowConfig cfg;
    cfg.image = {1, 4, 4, 2, PatchOrder::channel_major};
    cfg.width = 16;
    cfg.blocks = 2;
    cfg.layers = 1;
    cfg.heads = 2;
    cfg.num_classes = 3;
    cfg.alpha_clamp = 2.0;
    TarFlow<B> m(cfg, r);
    Rng q(3);
    m.visit_parameters([&](const std::string&, auto& p) { fill_normal(p.value, q, 0.0f, 0.1f); }, "");
    return m;
  };
  auto mc = make.template operator()<C>();
  auto mg = make.template operator()<G>();
  const HostMatrix<float> cond = data::one_hot<float>({0, 1, 2, 3, 3}, 4);
  const auto zc = randn<C>(5, 16, 4);
  const auto zg = randn<G>(5, 16, 4);
  for (double w : {0.0, 2.0}) {
    const Guidance<C> gc{w, true, {}};
    const Guidance<G> gg{w, true, {}};
    CHECK(max_rel(to_host(mc.sample(zc, from_host<C>(cond), gc).y), to_host(mg.sample(zg, from_host<G>(cond), gg).y)) <
          1e-3);
  }
  const auto xg = mg.sample(zg, from_host<G>(cond)).y;
  CHECK(max_rel(to_host(mg.sample_uncached(zg, from_host<G>(cond)).y), to_host(xg)) < 1e-4);
  CHECK(max_rel(to_host(denoise(mc, mc.sample(zc, from_host<C>(cond)).y, 0.1, from_host<C>(cond))),
                to_host(denoise(mg, xg, 0.1, from_host<G>(cond)))) < 1e-3);
}

TEST_CASE("cuda learned reverse model matches Cpu: stages, ReverseModel, distances, alignment heads, a trainer step") {
  compare_module([]<class B>() { Rng r(1); TransformerStage<B> s({4, 8, 2, 2, 2.0}, r); randomize(s, 2); return s; }, 8, 8);
  compare_module([]<class B>() { Rng r(3); MlpStage<B> s({1, 8, 2, 2, 2.0}, r); randomize(s, 4); return s; }, 5, 8);
  ReverseConfig rc;
  rc.tokens = 4;
  rc.token_dim = 4;
  rc.width = 8;
  rc.stages = 2;
  rc.heads = 2;
  rc.cond_features = 4;
  rc.guidance = true;
  rc.denoise_stage = true;
  for (bool bottleneck : {false, true}) {
    rc.bottleneck = bottleneck;
    Rng r1(5), r2(5);
    ReverseModel<C> gc(rc, r1);
    ReverseModel<G> gg(rc, r2);
    randomize(gc, 6);
    randomize(gg, 6);
    const HostMatrix<float> cond = data::one_hot<float>({0, 1, 2, 3, 3}, 4);
    const HostMatrix<float> w = HostMatrix<float>::Constant(5, 1, 0.7f);
    typename ReverseModel<C>::Context cc;
    typename ReverseModel<G>::Context cg;
    const auto oc = gc.forward(randn<C>(5, 16, 7), from_host<C>(cond), from_host<C>(w), cc);
    const auto og = gg.forward(randn<G>(5, 16, 7), from_host<G>(cond), from_host<G>(w), cg);
    CHECK(max_rel(to_host(oc), to_host(og)) < kTol);
    zero_grad(gc);
    zero_grad(gg);
    const std::vector<Tensor<C>> dhc{randn<C>(cc.hidden[0].rows(), cc.hidden[0].cols(), 8)};
    const std::vector<Tensor<G>> dhg{randn<G>(cg.hidden[0].rows(), cg.hidden[0].cols(), 8)};
    CHECK(max_rel(to_host(gc.backward(cc, randn<C>(5, 16, 9), dhc)), to_host(gg.backward(cg, randn<G>(5, 16, 9), dhg))) <
          kTol);
    const auto pc = grads(gc), pg = grads(gg);
    for (std::size_t i = 0; i < pc.size(); ++i) CHECK(max_rel(pc[i], pg[i]) < 1e-3);
    CHECK(max_rel(to_host(gc.sample_guided(randn<C>(5, 16, 7), from_host<C>(cond), 1.5)),
                  to_host(gg.sample_guided(randn<G>(5, 16, 7), from_host<G>(cond), 1.5))) < kTol);
  }
  const auto ac = randn<C>(6, 5, 11), bc = randn<C>(6, 5, 12), wc = randn<C>(6, 1, 13);
  const auto ag = randn<G>(6, 5, 11), bg = randn<G>(6, 5, 12), wg = randn<G>(6, 1, 13);
  auto same = [&](const auto& d) {
    CAPTURE(d.name());
    CHECK(max_rel(to_host(d.per_row(ac, bc)), to_host(d.per_row(ag, bg))) < kTol);
    CHECK(max_rel(to_host(d.grad(ac, bc, wc)), to_host(d.grad(ag, bg, wg))) < kTol);
  };
  same(Mse{});
  same(L1{});
  same(Huber{0.5});
  same(Cosine{});
  same(Adaptive<Sum<Mse, Cosine>>{{}, 0.5, 0.1});
  Rng f1(14), f2(14);
  MlpFeatures<C> nc({5, 7, 6}, f1);
  MlpFeatures<G> ng({5, 7, 6}, f2);
  const auto fc = Feature<MlpFeatures<C>, Mse>{&nc}.grad(ac, bc, wc);
  const auto fg = Feature<MlpFeatures<G>, Mse>{&ng}.grad(ag, bg, wg);
  CHECK(max_rel(to_host(fc), to_host(fg)) < kTol);

  // One ReverseTrainer step (hidden alignment, learned denoising, training-time CFG) on a small TarFlow.
  auto make_flow = []<class B>() {
    Rng r(2);
    TarFlowConfig cfg;
    cfg.image = {1, 4, 4, 2, PatchOrder::channel_major};
    cfg.width = 8;
    cfg.blocks = 2;
    cfg.layers = 1;
    cfg.heads = 2;
    cfg.num_classes = 3;
    TarFlow<B> m(cfg, r);
    Rng q(3);
    m.visit_parameters([&](const std::string&, auto& p) { fill_normal(p.value, q, 0.0f, 0.1f); }, "");
    return m;
  };
  auto fcpu = make_flow.template operator()<C>();
  auto fgpu = make_flow.template operator()<G>();
  rc.bottleneck = false;
  Rng r1(5), r2(5);
  ReverseModel<C> gc(rc, r1);
  ReverseModel<G> gg(rc, r2);
  HiddenAlignment<C> hc(rc, r1);
  HiddenAlignment<G> hg(rc, r2);
  ReverseTrainOptions o;
  o.noise = 0.05;
  o.guidance_max = 2.0;
  o.optim.ema_decay = 0.9;
  ReverseTrainer<TarFlow<C>, ReverseModel<C>, HiddenAlignment<C>> tc(fcpu, gc, hc, o);
  ReverseTrainer<TarFlow<G>, ReverseModel<G>, HiddenAlignment<G>> tg(fgpu, gg, hg, o);
  const HostMatrix<float> cond = data::one_hot<float>({0, 1, 2, 3, 0, 1}, 4);
  Rng s1(9), s2(9);
  for (int i = 0; i < 3; ++i) {
    const auto rcpu = tc.step(randn<C>(6, 16, 20 + i), from_host<C>(cond), s1);
    const auto rgpu = tg.step(randn<G>(6, 16, 20 + i), from_host<G>(cond), s2);
    CHECK(std::abs(rcpu.loss - rgpu.loss) < 1e-3 * std::max(1.0, std::abs(rcpu.loss)));
  }
  const auto vc = values(gc), vg = values(gg);
  for (std::size_t i = 0; i < vc.size(); ++i) CHECK(max_rel(vc[i], vg[i]) < 1e-3);
}

TEST_CASE("cuda training steps (NLL, clipping, AdamW, EMA) track the Cpu ones") {
  auto make = []<class B>() {
    Rng r(11);
    return Repeat<4, AffineCoupling<B>>([&](std::size_t i) { return make_coupling<B>(masks::half(2, int(i % 2)), {32, 32}, r); });
  };
  auto fc = make.template operator()<C>();
  auto fg = make.template operator()<G>();
  TrainOptions o;
  o.ema_decay = 0.9;
  o.verbose = false;
  MleTrainer<decltype(fc)> tc(fc, o);
  MleTrainer<decltype(fg)> tg(fg, o);
  Rng data(12);
  for (int s = 0; s < 5; ++s) {
    const HostMatrix<float> x = data::toy("moons", 128, data).cast<float>();
    const StepResult rc = tc.step(from_host<C>(x)), rg = tg.step(from_host<G>(x));
    CHECK(rg.loss == doctest::Approx(rc.loss).epsilon(1e-4));
    CHECK(rg.grad_norm == doctest::Approx(rc.grad_norm).epsilon(1e-3));
  }
  // Adam normalises each gradient entry, so an entry that is ~0 up to rounding can step ±lr on either backend:
  // parameters agree to a few lr, losses (above) to float precision.
  const auto vc = values(fc);
  const auto vg = values(fg);
  for (std::size_t i = 0; i < vc.size(); ++i) CHECK(max_rel(vc[i], vg[i]) < 1e-2);
}

int main(int argc, char** argv) {
  const int n = gpu::device_count();
  if (n == 0) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  std::printf("CUDA devices: %d\n", n);
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
