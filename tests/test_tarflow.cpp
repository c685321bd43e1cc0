// TARFlow (nn/attention.hpp, nn/transformer.hpp, nn/embedding.hpp, flow/tarflow_block.hpp, flow/patchify.hpp,
// flow/score.hpp, models/tarflow.hpp, data/labels.hpp): the attention primitives, attention / transformer /
// embedding modules, the TarBlock flow layer (numerical checks, causality in every ordering, cached == uncached
// decoding, guidance), and the model.
#include <cmath>

#include "helpers.hpp"

#include <biflow/models/tarflow.hpp>
#include <biflow/nn/transformer.hpp>

using namespace tests;
#define CPU_BACKENDS biflow::Cpu<double>, biflow::Cpu<float>

namespace {
template <class B>
HostMatrix<typename B::scalar> host(const Tensor<B>& t) {
  return to_host(t);
}
double max_abs(const auto& a, const auto& b) { return double((a - b).cwiseAbs().maxCoeff()); }

template <class B>
typename TarBlock<B>::Config tiny_block(long cond = 0, double clamp = 0.0) {
  return {4, 2, 8, 2, 2, cond, 2.0, clamp};  // T = 4 tokens of D = 2, width 8, 2 layers, 2 heads
}
template <class B>
Tensor<B> one_hot_rows(const std::vector<int>& labels, long classes) {
  return from_host<B>(data::one_hot<typename B::scalar>(labels, classes));
}
}  // namespace

// ---- primitives ----------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("gemm_batched equals per-matrix products for every transpose combination", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  // 2 x 3 batch of 3x4 (A) and 4x5 (B) matrices inside wider buffers, written into C with alpha and beta.
  const auto a = randn<B>(2 * 3 * 4, 6, 1), b = randn<B>(2 * 3 * 5, 7, 2);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const MatView va = ta ? MatView{1, 4, 3, 6, 3 * 4 * 6, 4 * 6} : MatView{1, 3, 4, 6, 3 * 4 * 6, 4 * 6};
      const MatView vb = tb ? MatView{2, 5, 4, 7, 3 * 5 * 7, 5 * 7} : MatView{2, 4, 5, 7, 3 * 5 * 7, 5 * 7};
      auto c = randn<B>(2 * 3 * 3, 5, 3);
      const auto c0 = host(c);
      const MatView vc{0, 3, 5, 5, 3 * 3 * 5, 3 * 5};
      gemm_batched(a, va, bool(ta), b, vb, bool(tb), c, vc, 2, 3, T(0.5), T(2));
      const auto A = host(a), Bh = host(b), C = host(c);
      double worst = 0;
      for (long i = 0; i < 2; ++i)
        for (long j = 0; j < 3; ++j)
          for (long r = 0; r < 3; ++r)
            for (long col = 0; col < 5; ++col) {
              double s = 0;
              for (long k = 0; k < 4; ++k) {
                const long oa = va.offset + i * va.outer + j * va.inner, ob = vb.offset + i * vb.outer + j * vb.inner;
                const double av = ta ? A.data()[oa + k * 6 + r] : A.data()[oa + r * 6 + k];
                const double bv = tb ? Bh.data()[ob + col * 7 + k] : Bh.data()[ob + k * 7 + col];
                s += av * bv;
              }
              const long oc = i * vc.outer + j * vc.inner + r * 5 + col;
              worst = std::max(worst, std::abs(double(C.data()[oc]) - (0.5 * s + 2.0 * double(c0.data()[oc]))));
            }
      CHECK(worst < (std::is_same_v<T, double> ? 1e-12 : 1e-4));
    }
}

TEST_CASE("gemm_batched rejects a view that reaches past its tensor, naming the operand") {
  using B = Cpu<float>;
  const auto a = randn<B>(4, 4, 1);
  Tensor<B> c(4, 4);
  const std::string msg = message<shape_error>([&] {
    gemm_batched(a, {0, 4, 4, 4, 16, 0}, false, a, {0, 4, 4, 4, 0, 0}, false, c, {0, 4, 4, 4, 0, 0}, 2, 1);
  });
  CHECK(msg.find("view of A") != std::string::npos);
  CHECK(msg.find("16 elements") != std::string::npos);
}

TEST_CASE_TEMPLATE("causal softmax zeroes future positions and normalises the rest", B, CPU_BACKENDS) {
  auto s = randn<B>(2 * 3, 3, 4, 3.0);  // two stacked 3x3 score blocks
  const auto before = host(s);
  softmax_rows(s, true);
  const auto p = host(s);
  for (long r = 0; r < 6; ++r) {
    const long q = r % 3;
    double z = 0;
    for (long j = 0; j <= q; ++j) z += std::exp(double(before(r, j)));
    for (long j = 0; j < 3; ++j) {
      const double want = j <= q ? std::exp(double(before(r, j))) / z : 0.0;
      CHECK(double(p(r, j)) == doctest::Approx(want).epsilon(1e-5));
    }
  }
}

TEST_CASE("softmax backward matches finite differences") {
  using B = Cpu<double>;
  const auto s = randn<B>(4, 4, 5), r = randn<B>(4, 4, 6);
  auto loss = [&](const HostMatrix<double>& sh) {
    Tensor<B> t = from_host<B>(sh);
    softmax_rows(t, true);
    return host(t).cwiseProduct(host(r)).sum();
  };
  Tensor<B> p = s;
  softmax_rows(p, true);
  Tensor<B> g = r;
  softmax_rows_backward(p, g);
  HostMatrix<double> sh = host(s);
  for (long i = 0; i < sh.size(); ++i) {
    const double keep = sh.data()[i];
    sh.data()[i] = keep + 1e-6;
    const double lp = loss(sh);
    sh.data()[i] = keep - 1e-6;
    const double lm = loss(sh);
    sh.data()[i] = keep;
    CHECK(host(g).data()[i] == doctest::Approx((lp - lm) / 2e-6).epsilon(1e-6));
  }
}

TEST_CASE("add_repeat_rows and sum_row_groups are adjoint; copy_block checks its bounds") {
  using B = Cpu<double>;
  auto x = randn<B>(6, 3, 7);
  const auto v = randn<B>(2, 3, 8);
  const auto x0 = host(x);
  add_repeat_rows(x, v, 3);
  for (long r = 0; r < 6; ++r)
    for (long c = 0; c < 3; ++c) CHECK(host(x)(r, c) == doctest::Approx(x0(r, c) + host(v)(r / 3, c)));
  const auto g = host(sum_row_groups(x, 3));
  CHECK(g(1, 2) == doctest::Approx(host(x)(3, 2) + host(x)(4, 2) + host(x)(5, 2)));
  CHECK(message<shape_error>([&] { add_repeat_rows(x, v, 2); }).find("do not form 2 groups of 2") != std::string::npos);
  Tensor<B> dst(2, 2);
  CHECK(message<shape_error>([&] { copy_block(x, 0, 3, dst, 1, 2, 2, 2); }).find("destination") != std::string::npos);
}

// ---- nn modules ----------------------------------------------------------------------------------------

TEST_CASE("attention (causal and bidirectional), transformer layer and embedding pass the gradient checks") {
  using B = Cpu<double>;
  Rng rng(11);
  const auto x = randn<B>(2 * 3, 4, 12);  // 2 sequences of 3 tokens, width 4
  for (bool causal : {true, false}) {
    Attention<B> attn(4, 2, 3, causal, rng);
    check_module_report(testing::check_module(attn, x));
  }
  TransformerLayer<B> layer(4, 2, 3, true, rng, 2.0);
  randomize(layer, 13, 0.5);
  check_module_report(testing::check_module(layer, x));
  Embedding<B> emb(3, 5, rng);
  check_module_report(testing::check_module(emb, one_hot_rows<B>({0, 2, 1, 2}, 3)));
}

TEST_CASE_TEMPLATE("causal attention: a token's output ignores later tokens; bidirectional does not", B, CPU_BACKENDS) {
  Rng rng(14);
  const long S = 5, W = 4;
  for (bool causal : {true, false}) {
    TransformerLayer<B> layer(W, 2, S, causal, rng, 2.0);
    randomize(layer, 15, 0.2);  // small weights: attention must not saturate onto the token itself
    const auto x = randn<B>(S, W, 16);
    HostMatrix<typename B::scalar> xp = host(x);
    xp.row(3) += host(randn<B>(1, W, 3));  // perturb token 3 (not by a constant: LayerNorm would remove it)
    typename TransformerLayer<B>::Context c1, c2;
    const auto y0 = host(layer.forward(x, c1)), y1 = host(layer.forward(from_host<B>(xp), c2));
    // Tokens 0-2 precede the perturbed token: untouched when causal, moved when bidirectional.
    if (causal) CHECK(max_abs(y0.topRows(3), y1.topRows(3)) == 0.0);
    else CHECK(max_abs(y0.topRows(3), y1.topRows(3)) > 1e-3);
    CHECK(max_abs(y0.bottomRows(2), y1.bottomRows(2)) > 1e-3);
  }
}

TEST_CASE_TEMPLATE("KV-cached decoding steps reproduce the causal forward pass token by token", B, CPU_BACKENDS) {
  Rng rng(17);
  const long N = 3, S = 4, W = 6;
  TransformerLayer<B> layer(W, 3, S, true, rng);
  randomize(layer, 18, 0.4);
  const auto x = randn<B>(N * S, W, 19);
  typename TransformerLayer<B>::Context ctx;
  const auto full = host(layer.forward(x, ctx));
  KVCache<B> cache;
  const auto xh = host(x);
  for (long t = 0; t < S; ++t) {
    HostMatrix<typename B::scalar> tok(N, W);
    for (long n = 0; n < N; ++n) tok.row(n) = xh.row(n * S + t);
    const auto y = host(layer.step(from_host<B>(tok), cache));
    for (long n = 0; n < N; ++n) CHECK(max_abs(y.row(n), full.row(n * S + t)) < roundtrip_tol<typename B::scalar>());
  }
  CHECK(cache.len == S);
  CHECK(message<usage_error>([&] { layer.step(randn<B>(N, W, 1), cache); }).find("cache is full") != std::string::npos);
}

// ---- TarBlock ------------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("TarBlock in identity, reversed and random token order passes the numerical checks", B,
                   CPU_BACKENDS) {
  Rng rng(21);
  const auto cfg = tiny_block<B>();
  std::vector<std::vector<std::int32_t>> orders{TarBlock<B>::identity_order(4), TarBlock<B>::reversed_order(4),
                                                {2, 0, 3, 1}};
  for (const auto& order : orders) {
    TarBlock<B> block(cfg, order, rng);
    randomize(block, 22, 0.3);
    check_layer(block, randn<B>(3, 8, 23));
  }
}

TEST_CASE_TEMPLATE("class-conditional TarBlock with a soft-clamped scale passes the numerical checks", B, CPU_BACKENDS) {
  Rng rng(24);
  TarBlock<B> block(tiny_block<B>(4, 1.5), TarBlock<B>::reversed_order(4), rng);
  randomize(block, 25, 0.4);
  check_layer(block, randn<B>(3, 8, 26), one_hot_rows<B>({0, 3, 1}, 4));
}

TEST_CASE("TarBlock is causal in every ordering: perturbing a token changes no parameters of it or earlier tokens") {
  using B = Cpu<double>;
  Rng rng(27);
  const long Tn = 5, D = 2;
  std::vector<std::vector<std::int32_t>> orders{TarBlock<B>::identity_order(Tn), TarBlock<B>::reversed_order(Tn),
                                                {3, 0, 4, 1, 2}};
  for (const auto& order : orders) {
    TarBlock<B> block({Tn, D, 8, 2, 2, 3, 2.0, 0.0}, order, rng);
    randomize(block, 28, 0.5);
    const auto x = randn<B>(2, Tn * D, 29);
    const auto cond = one_hot_rows<B>({1, 2}, 3);
    const auto [a0, m0] = block.transform_params(x, cond);
    for (long s = 0; s < Tn; ++s) {  // s = position in the block's order
      const long tok = order[std::size_t(s)];
      HostMatrix<double> xp = host(x);
      xp.middleCols(tok * D, D).array() += 0.7;
      const auto [a1, m1] = block.transform_params(from_host<B>(xp), cond);
      for (long s2 = 0; s2 < Tn; ++s2) {
        const long t2 = order[std::size_t(s2)];
        const double da = max_abs(host(a0).middleCols(t2 * D, D), host(a1).middleCols(t2 * D, D));
        const double dm = max_abs(host(m0).middleCols(t2 * D, D), host(m1).middleCols(t2 * D, D));
        if (s2 <= s) {
          CHECK(da == 0.0);
          CHECK(dm == 0.0);
        } else if (s2 == s + 1) {
          CHECK(da + dm > 1e-6);  // the next token does see it
        }
      }
    }
    // The first token in block order always passes through unchanged.
    const long first = order[0];
    CHECK(host(a0).middleCols(first * D, D).cwiseAbs().maxCoeff() == 0.0);
  }
}

TEST_CASE_TEMPLATE("cached decoding equals the uncached inverse, with and without guidance", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  Rng rng(30);
  TarBlock<B> block({6, 3, 8, 2, 2, 4, 2.0, 2.0}, TarBlock<B>::reversed_order(6), rng);
  randomize(block, 31, 0.4);
  const auto z = randn<B>(3, 18, 32);
  const auto cond = one_hot_rows<B>({0, 1, 2}, 4);
  const double tol = std::is_same_v<T, double> ? 1e-10 : 1e-4;
  for (double w : {0.0, 1.5})
    for (bool anneal : {false, true}) {
      const Guidance<B> g{w, anneal, {}};
      const auto cached = block.decode(z, cond, g), plain = block.decode_uncached(z, cond, g);
      CHECK(max_abs(host(cached.y), host(plain.y)) < tol);
      CHECK(max_abs(host(cached.logdet), host(plain.logdet)) < tol);
    }
  // Unguided decoding inverts forward exactly.
  typename TarBlock<B>::Context ctx;
  const auto f = block.forward(host(z).rows() ? z : z, ctx, cond);
  CHECK(max_abs(host(block.decode(f.y, cond, {}).y), host(z)) < tol);
}

TEST_CASE("guidance scale 0 is the conditional model; guidance uses the null label as the unconditional context") {
  using B = Cpu<double>;
  Rng rng(33);
  TarBlock<B> block({4, 2, 8, 1, 2, 3, 2.0, 2.0}, TarBlock<B>::identity_order(4), rng);
  randomize(block, 34, 0.5);
  const auto z = randn<B>(2, 8, 35);
  const auto cond = one_hot_rows<B>({0, 1}, 3);
  const auto plain = block.inverse(z, cond);
  const auto w0 = block.decode(z, cond, {0.0, false, {}});
  CHECK(max_abs(host(w0.y), host(plain.y)) == 0.0);
  // w = 1 with the conditional context as "unconditional" changes nothing either (cond − uncond = 0).
  const auto same = block.decode(z, cond, {1.0, false, cond});
  CHECK(max_abs(host(same.y), host(plain.y)) < 1e-12);
  // With the default null label, guidance moves the sample.
  const auto guided = block.decode(z, cond, {1.0, false, {}});
  CHECK(max_abs(host(guided.y), host(plain.y)) > 1e-4);
  // Explicit null rows == default.
  const auto explicit_null = block.decode(z, cond, {1.0, false, one_hot_rows<B>({2, 2}, 3)});
  CHECK(max_abs(host(explicit_null.y), host(guided.y)) < 1e-12);
}

TEST_CASE("label dropout: p = 0 keeps every label, p = 1 drops all to the null label, p = 0.25 about a quarter") {
  Rng rng(36);
  std::vector<int> labels(4000);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = int(i % 10);
  const auto keep = data::class_condition(labels, 10, 0.0, rng);
  CHECK(keep.cols() == 11);
  CHECK(keep.col(10).sum() == 0.0f);
  CHECK(keep(7, 7) == 1.0f);
  const auto drop = data::class_condition(labels, 10, 1.0, rng);
  CHECK(drop.col(10).sum() == 4000.0f);
  const auto some = data::class_condition(labels, 10, 0.25, rng);
  CHECK(some.col(10).sum() / 4000.0f == doctest::Approx(0.25).epsilon(0.1));
  CHECK(data::null_condition(3, 10).col(10).sum() == 3.0f);
  CHECK(message<usage_error>([&] { data::class_condition({0, 12}, 10, 0.1, rng); }).find("label 12") !=
        std::string::npos);
}

TEST_CASE("TarBlock rejects a token order that is not a permutation, naming the entry") {
  using B = Cpu<float>;
  Rng rng(37);
  CHECK(message<usage_error>([&] { TarBlock<B>(tiny_block<B>(), {0, 1, 1, 3}, rng); }).find("entry 2 = 1") !=
        std::string::npos);
  CHECK(message<usage_error>([&] { TarBlock<B>(tiny_block<B>(), {0, 1}, rng); }).find("expected 4") !=
        std::string::npos);
}

// ---- model -----------------------------------------------------------------------------------------------

TEST_CASE("patchify orders values inside a patch channel-major or channel-last as documented") {
  // 2 channels, 4x4 image, patch 2: token 1 is the top-right patch.
  ImageShape s{2, 4, 4, 2, PatchOrder::channel_major};
  const auto cm = patchify_indices(s);
  // token 1, element (c=1, py=0, px=1) -> CHW index 1*16 + 0*4 + 3
  CHECK(cm[std::size_t(1 * 8 + (1 * 2 + 0) * 2 + 1)] == 16 + 3);
  s.order = PatchOrder::channel_last;
  const auto cl = patchify_indices(s);
  // token 2 (bottom-left), element (py=1, px=0, c=1) -> (1*2+0)*2+1 = 5 -> CHW 16 + 3*4 + 0
  CHECK(cl[std::size_t(2 * 8 + 5)] == 16 + 12);
  CHECK(message<usage_error>([&] { patchify_indices({1, 5, 4, 2}); }).find("does not divide") != std::string::npos);
}

TEST_CASE_TEMPLATE("TarFlow model: exact inverse, trajectory, and parameter names", B, CPU_BACKENDS) {
  using T = typename B::scalar;
  Rng rng(40);
  TarFlowConfig cfg;
  cfg.image = {1, 4, 4, 2, PatchOrder::channel_major};
  cfg.width = 8;
  cfg.blocks = 3;
  cfg.layers = 1;
  cfg.heads = 2;
  cfg.num_classes = 3;
  cfg.alpha_clamp = 2.0;
  TarFlow<B> model(cfg, rng);
  randomize(model, 41, 0.2);
  const auto x = randn<B>(4, 16, 42);
  const auto cond = one_hot_rows<B>({0, 1, 2, 3}, 4);
  typename TarFlow<B>::Context ctx;
  const auto f = model.forward(x, ctx, cond);
  const auto inv = model.inverse(f.y, cond);
  const double tol = std::is_same_v<T, double> ? 1e-10 : 1e-4;
  CHECK(max_abs(host(inv.y), host(x)) < tol);
  CHECK(max_abs(host(inv.logdet), -host(f.logdet)) < tol);
  CHECK(max_abs(host(model.inverse_uncached(f.y, cond).y), host(x)) < tol);
  typename TarFlow<B>::Context c2;
  const auto traj = model.forward_trajectory(x, c2, cond);
  REQUIRE(traj.states.size() == 4);
  CHECK(max_abs(host(traj.states.back()), host(f.y)) == 0.0);
  CHECK(max_abs(host(traj.logdet), host(f.logdet)) == 0.0);
  // The inference trajectory (what a frozen F gives the reverse trainer) has the same states, and no context.
  const auto itraj = model.forward_trajectory(x, cond);
  REQUIRE(itraj.states.size() == traj.states.size());
  for (std::size_t i = 0; i < traj.states.size(); ++i) CHECK(max_abs(host(itraj.states[i]), host(traj.states[i])) == 0.0);
  CHECK(max_abs(host(model.forward(x, cond).y), host(f.y)) == 0.0);
  std::vector<std::string> names;
  model.visit_parameters([&](const std::string& n, auto&) { names.push_back(n); }, "");
  CHECK(names.front() == "blocks.0.proj_in.weight");
  CHECK(std::find(names.begin(), names.end(), "blocks.2.layers.0.attn.qkv.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "blocks.1.class_embed.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "blocks.1.layers.0.mlp.2.bias") != names.end());
}

TEST_CASE("TarFlow passes the numerical checks in double (tiny image, two blocks)") {
  using B = Cpu<double>;
  Rng rng(43);
  TarFlowConfig cfg;
  cfg.image = {1, 2, 4, 2, PatchOrder::channel_last};
  cfg.width = 8;
  cfg.blocks = 2;
  cfg.layers = 1;
  cfg.heads = 2;
  TarFlow<B> model(cfg, rng);
  randomize(model, 44, 0.3);
  check_layer(model, randn<B>(2, 8, 45));
}

TEST_CASE("score is the gradient of log p (finite differences) and denoise adds sigma^2 times it") {
  using B = Cpu<double>;
  Rng rng(46);
  TarFlowConfig cfg;
  cfg.image = {1, 2, 2, 1};
  cfg.width = 8;
  cfg.blocks = 2;
  cfg.layers = 1;
  cfg.heads = 2;
  TarFlow<B> model(cfg, rng);
  randomize(model, 47, 0.3);
  const auto x = randn<B>(3, 4, 48);
  const auto s = host(score(model, x));
  HostMatrix<double> xh = host(x);
  for (long i = 0; i < xh.size(); ++i) {
    const double keep = xh.data()[i];
    xh.data()[i] = keep + 1e-6;
    const auto lp = host(log_prob(model, from_host<B>(xh)));
    xh.data()[i] = keep - 1e-6;
    const auto lm = host(log_prob(model, from_host<B>(xh)));
    xh.data()[i] = keep;
    const long r = i / 4;
    CHECK(s.data()[i] == doctest::Approx((lp(r, 0) - lm(r, 0)) / 2e-6).epsilon(1e-6));
  }
  const auto d = host(denoise(model, x, 0.3));
  CHECK(max_abs(d, host(x) + 0.09 * s) < 1e-12);
}

TEST_CASE("score is an input-only backward of a const flow: parameter gradients and frozen flags untouched") {
  using B = Cpu<double>;
  Rng rng(49);
  TarFlowConfig cfg;
  cfg.image = {1, 4, 4, 2};
  cfg.width = 8;
  cfg.blocks = 2;
  cfg.layers = 1;
  cfg.heads = 2;
  cfg.num_classes = 3;
  TarFlow<B> model(cfg, rng);
  randomize(model, 50, 0.3);
  const auto x = randn<B>(3, 16, 51);
  const auto cond = one_hot_rows<B>({0, 1, 2}, 4);
  zero_grad(model);
  long thawed_first = 0;
  model.visit_parameters([&](const std::string&, auto& p) { thawed_first += p.frozen ? 0 : 1; }, "");
  // One parameter frozen by the user beforehand stays frozen afterwards; the rest thaw again.
  bool first = true;
  model.visit_parameters([&](const std::string&, auto& p) { if (first) p.frozen = true, first = false; }, "");
  const TarFlow<B>& frozen_model = model;  // score needs no mutable flow
  const auto s = host(score(frozen_model, x, cond));
  CHECK(s.cwiseAbs().maxCoeff() > 0.0);
  long nonzero = 0, frozen = 0;
  model.visit_parameters([&](const std::string&, auto& p) {
    nonzero += host(p.grad).cwiseAbs().maxCoeff() > 0 ? 1 : 0;
    frozen += p.frozen ? 1 : 0;
  }, "");
  CHECK(nonzero == 0);
  CHECK(frozen == 1);
  // The same input gradient as a full backward, which does fill the parameter gradients.
  model.visit_parameters([&](const std::string&, auto& p) { p.frozen = false; }, "");
  typename TarFlow<B>::Context ctx;
  const FlowOut<B> o = model.forward(x, ctx, cond);
  const auto full = host(model.backward(ctx, zip(fn::Neg{}, o.y), constant<B>(3, 1, 1.0)));
  CHECK(max_abs(full, s) < 1e-12);
  model.visit_parameters([&](const std::string&, auto& p) { nonzero += host(p.grad).cwiseAbs().maxCoeff() > 0 ? 1 : 0; }, "");
  CHECK(nonzero == thawed_first);
}

TEST_CASE("ImageNet-latent shape: 4x32x32, patch 2 (T = 256), 1000 classes runs forward, backward and exact inverse") {
  using B = Cpu<float>;
  Rng rng(50);
  TarFlowConfig cfg;
  cfg.image = {4, 32, 32, 2, PatchOrder::channel_major};
  cfg.width = 32;
  cfg.blocks = 2;
  cfg.layers = 1;
  cfg.heads = 2;
  cfg.num_classes = 1000;
  TarFlow<B> model(cfg, rng);
  randomize(model, 51, 0.05);
  REQUIRE(model.block(0).config().tokens == 256);
  REQUIRE(model.block(0).config().token_dim == 16);
  const auto x = randn<B>(2, 4096, 52);
  const auto cond = one_hot_rows<B>({7, 999}, 1001);
  typename TarFlow<B>::Context ctx;
  const auto f = model.forward(x, ctx, cond);
  CHECK(all_finite(f.y));
  const auto dx = model.backward(ctx, f.y, constant<B>(2, 1, -1.0f));
  CHECK(dx.cols() == 4096);
  CHECK(all_finite(dx));
  const auto inv = model.inverse(f.y, cond, Guidance<B>{1.0, true, {}});  // guided decoding runs too
  CHECK(all_finite(inv.y));
  CHECK(max_abs(host(model.inverse(f.y, cond).y), host(x)) < 1e-3);
}
