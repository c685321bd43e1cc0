#pragma once
// TARFlow block (Zhai et al. 2024): an affine autoregressive flow over T tokens of D values whose
// conditioner is a causal transformer.
//   xs = x with tokens put in the block's order (identity, reversed, or any permutation of the T tokens)
//   h  = proj_in(xs) + pos_embed[order] (+ class_embed(cond));  K causal pre-norm transformer layers
//   (α, μ) = proj_out(h), shifted right by one token: token t's (α, μ) depend on tokens < t only; token 0
//   gets (0, 0) and passes through. proj_out starts at zero, so a fresh block is the identity.
//   z = (xs − μ)·exp(−α), log-det = −Σα, with the optional soft clamp α = c·tanh(α_raw / c).
// Rows hold T·D features, token-major (token t = columns [t·D, (t+1)·D)); z leaves in the input's token order.
// The inverse decodes token by token with a KV cache (T − 1 steps), optionally with classifier-free guidance.
#include <cstdint>
#include <numeric>
#include <vector>

#include "../nn/embedding.hpp"
#include "../nn/stack.hpp"
#include "../nn/transformer.hpp"
#include "flow_layer.hpp"

namespace biflow {


/// Classifier-free guidance at sampling: (α, μ) ← cond + w_t·(cond − uncond), w_t = scale, or
/// scale·t/(T−1) for token t when annealed. scale = 0 is the plain conditional model.
template <Backend B>
struct Guidance {
  double scale = 0;
  bool anneal = false;
  Tensor<B> uncond;  ///< unconditional context (rows x cond_features); empty: the null label (last column)
};
/// Inverse option: decode without the KV cache (T − 1 full transformer passes per block, O(T²) work) — the
/// reference the cached decode is tested against; same guidance semantics.
template <class B>
struct UncachedDecode {
  Guidance<B> guidance;
};

template <Backend B>
class TarBlock : public FlowLayerBase<TarBlock<B>, B> {
 public:
  static constexpr const char* layer_name = "TarBlock";
  using T = typename B::scalar;
  struct Config {
    long tokens = 0, token_dim = 0;  ///< T and D
    long width = 64;                 ///< transformer width C
    long layers = 2, heads = 4;      ///< K layers; head dim = width / heads
    long cond_features = 0;          ///< columns of the context (classes + 1 with a null label); 0 = unconditional
    double mlp_ratio = 4.0;
    double alpha_clamp = 0.0;  ///< c of α = c·tanh(α/c); <= 0: no clamp
  };
  struct Context {
    typename Linear<B>::Context in, out;
    typename Stack<TransformerLayer<B>>::Context layers;
    typename Embedding<B>::Context emb;
    Tensor<B> z, alpha;  ///< block order, rows x T·D
  };

  TarBlock() = default;
  /// order[s] = token placed at sequence position s (identity_order / reversed_order or any permutation).
  TarBlock(const Config& c, std::vector<std::int32_t> order, Rng& rng) : cfg_(c) {
    if (c.tokens <= 0 || c.token_dim <= 0)
      throw usage_error(detail::cat("TarBlock: tokens and token_dim must be positive, got ", c.tokens, " and ",
                                    c.token_dim));
    set_order(std::move(order));
    const long Tn = c.tokens, D = c.token_dim, W = c.width;
    proj_in = Linear<B>(D, W, rng);
    Tensor<B> pos(Tn, W, uninit);
    fill_normal(pos, rng, T(0), T(0.02));
    pos_embed = Parameter<B>(std::move(pos));
    if (c.cond_features > 0) class_embed = Embedding<B>(c.cond_features, W, rng);
    layers = Stack<TransformerLayer<B>>(std::size_t(c.layers), [&](std::size_t) {
      return TransformerLayer<B>(W, c.heads, Tn, true, rng, c.mlp_ratio);
    });
    proj_out = Linear<B>(W, 2 * D, rng);
    proj_out.zero_init();
  }
  static std::vector<std::int32_t> identity_order(long tokens) {
    std::vector<std::int32_t> o(static_cast<std::size_t>(tokens));
    std::iota(o.begin(), o.end(), 0);
    return o;
  }
  static std::vector<std::int32_t> reversed_order(long tokens) {
    std::vector<std::int32_t> o(static_cast<std::size_t>(tokens));
    std::iota(o.rbegin(), o.rend(), 0);
    return o;
  }

  long features() const { return cfg_.tokens * cfg_.token_dim; }
  long cond_features() const { return cfg_.cond_features; }
  const Config& config() const { return cfg_; }
  const std::vector<std::int32_t>& order() const { return order_; }
  /// order[s] = token at sequence position s; rebuilds the gathers (and is how a loaded order is installed).
  void set_order(std::vector<std::int32_t> order) {
    const long Tn = cfg_.tokens, D = cfg_.token_dim, W = cfg_.width;
    if (long(order.size()) != Tn)
      throw usage_error(detail::cat("TarBlock: the token order has ", order.size(), " entries, expected ", Tn));
    std::vector<std::int32_t> inv(order.size(), -1);
    for (long s = 0; s < Tn; ++s) {
      const auto t = order[std::size_t(s)];
      if (t < 0 || t >= Tn || inv[std::size_t(t)] != -1)
        throw usage_error(detail::cat("TarBlock: token order entry ", s, " = ", t,
                                      " is out of range or repeated; expected a permutation of 0..", Tn - 1));
      inv[std::size_t(t)] = std::int32_t(s);
    }
    std::vector<std::int32_t> fwd(std::size_t(Tn * D)), bwd(std::size_t(Tn * D)), pf(std::size_t(Tn * W)),
        pb(std::size_t(Tn * W));
    for (long s = 0; s < Tn; ++s) {
      for (long e = 0; e < D; ++e) {
        fwd[std::size_t(s * D + e)] = std::int32_t(order[std::size_t(s)] * D + e);
        bwd[std::size_t(s * D + e)] = std::int32_t(inv[std::size_t(s)] * D + e);
      }
      for (long w = 0; w < W; ++w) {
        pf[std::size_t(s * W + w)] = std::int32_t(order[std::size_t(s)] * W + w);
        pb[std::size_t(s * W + w)] = std::int32_t(inv[std::size_t(s)] * W + w);
      }
    }
    order_ = std::move(order);
    fwd_ = make_indices<B>(fwd);
    inv_ = make_indices<B>(bwd);
    pos_fwd_ = make_indices<B>(pf);
    pos_inv_ = make_indices<B>(pb);
  }
  /// The token order is state: "order" (I64 [T]).
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    v(join_name(prefix, "order"), index_buffer(order_, [this](std::vector<std::int32_t> o) { set_order(std::move(o)); }));
  }

  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    const Tensor<B> xs = gather_cols(x, fwd_);
    auto [a, mu] = split(net(xs, cond, ctx));
    Tensor<B> z = zip(fn::AffineArForward{}, xs, mu, a);
    FlowOut<B> out{gather_cols(z, inv_), {}};
    if (want_logdet) out.logdet = zip(fn::Neg{}, row_sum(a));
    if (ctx) {
      ctx->z = std::move(z);
      ctx->alpha = std::move(a);
    }
    return out;
  }
  /// Exact inverse by KV-cached causal decoding (no guidance).
  FlowOut<B> inverse_impl(const Tensor<B>& z, const Tensor<B>& cond, bool want_logdet) const {
    return decode(z, cond, Guidance<B>{}, want_logdet);
  }
  /// The inverse options of a TARFlow block: `inverse(z, cond, Guidance<B>{w, anneal, uncond})` decodes with
  /// classifier-free guidance; `inverse(z, cond, UncachedDecode<B>{g})` without the KV cache.
  FlowOut<B> inverse_impl(const Tensor<B>& z, const Tensor<B>& cond, bool want_logdet, const Guidance<B>& g) const {
    return decode(z, cond, g, want_logdet);
  }
  FlowOut<B> inverse_impl(const Tensor<B>& z, const Tensor<B>& cond, bool, const UncachedDecode<B>& o) const {
    return decode_uncached(z, cond, o.guidance);
  }

  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all) {
    const long N = ctx.z.rows(), Tn = cfg_.tokens, D = cfg_.token_dim, W = cfg_.width;
    require_shape("TarBlock.backward: dy", dy, N, Tn * D);
    require_shape("TarBlock.backward: dlogdet", dlogdet, N, 1);
    const Tensor<B> dz = gather_cols(dy, fwd_);
    Tensor<B> dxs = zip(fn::MulExpNeg{}, dz, ctx.alpha);
    Tensor<B> dmu = zip(fn::Neg{}, dxs);
    Tensor<B> da = zip(fn::AffineArDAlpha{cfg_.alpha_clamp}, dz, ctx.z, dlogdet, ctx.alpha);
    da.reshape(N * Tn, D);
    dmu.reshape(N * Tn, D);
    Tensor<B> dp = concat_cols(da, dmu);
    dp.reshape(N, Tn * 2 * D);
    // Undo the one-token shift: output token t fed the parameters of token t + 1; the last one fed nothing.
    Tensor<B> dout = concat_cols(slice_cols(dp, 2 * D, (Tn - 1) * 2 * D), Tensor<B>(N, 2 * D));
    dout.reshape(N * Tn, 2 * D);
    const GradMode m = inner(mode);
    Tensor<B> dh = proj_out.backward(ctx.out, dout, m);
    dh = layers.backward(ctx.layers, dh, m);
    // The class embedding's input is the context, never differentiated: parameters only, or nothing.
    if (cfg_.cond_features > 0 && mode != GradMode::input_only)
      class_embed.backward(ctx.emb, sum_row_groups(dh, Tn), GradMode::params_only);
    if (wants_grad(mode, pos_embed)) {
      dh.reshape(N, Tn * W);
      Tensor<B> gpos;
      col_sum(dh, gpos);
      gpos = gather_cols(gpos, pos_inv_);  // block order -> token order of the parameter
      gpos.reshape(Tn, W);
      add_inplace(pos_embed.grad, gpos);
      dh.reshape(N * Tn, W);
    }
    Tensor<B> dxin = proj_in.backward(ctx.in, dh, mode);
    if (!wants_input_grad(mode)) return {};
    dxin.reshape(N, Tn * D);
    add_inplace(dxs, dxin);
    return gather_cols(dxs, inv_);
  }

  /// Inverse by causal decoding with a KV cache: T − 1 sequential steps, each running one token of every
  /// sample through the transformer. With guidance (scale != 0, conditional block) the conditional and
  /// unconditional passes run together as one batch of 2N rows.
  FlowOut<B> decode(const Tensor<B>& z, const Tensor<B>& cond, const Guidance<B>& g, bool want_logdet = true) const {
    this->check_inputs("decode", z, cond);
    const long N = z.rows(), Tn = cfg_.tokens, D = cfg_.token_dim, W = cfg_.width;
    const bool cfg = g.scale != 0 && cfg_.cond_features > 0;
    const long M = cfg ? 2 * N : N;
    const Tensor<B> zs = gather_cols(z, fwd_);
    Tensor<B> xs = zs;  // token 0 passes through
    Tensor<B> ce;
    if (cfg_.cond_features > 0) ce = class_embed.forward(cfg ? concat_rows(cond, uncond_rows(g, N)) : cond);
    const Tensor<B> pos = pos_seq();
    std::vector<KVCache<B>> caches(layers.size());
    Tensor<B> ld(N, 1), tok(M, D, uninit), zt(N, D, uninit);
    for (long i = 0; i + 1 < Tn; ++i) {
      copy_block(xs, i * D, Tn * D, tok, 0, D, N, D);
      if (cfg) copy_block(xs, i * D, Tn * D, tok, N * D, D, N, D);
      Tensor<B> h = proj_in.forward(tok);
      map(h, fn::Add{}, h, slice_cols(pos, i * W, W));
      if (!ce.empty()) add_inplace(h, ce);
      for (std::size_t l = 0; l < layers.size(); ++l) h = layers[l].step(h, caches[l]);
      const Tensor<B> o = proj_out.forward(h);
      Tensor<B> a = zip(fn::SoftClamp{cfg_.alpha_clamp}, slice_cols(o, 0, D)), mu = slice_cols(o, D, D);
      if (cfg) {
        const double w = g.anneal ? g.scale * double(i + 1) / double(Tn - 1) : g.scale;
        a = zip(fn::Guide{w}, slice_rows(a, 0, N), slice_rows(a, N, N));
        mu = zip(fn::Guide{w}, slice_rows(mu, 0, N), slice_rows(mu, N, N));
      }
      copy_block(zs, (i + 1) * D, Tn * D, zt, 0, D, N, D);
      const Tensor<B> xt = zip(fn::AffineArInverse{}, zt, mu, a);
      copy_block(xt, 0, D, xs, (i + 1) * D, Tn * D, N, D);
      if (want_logdet) add_inplace(ld, row_sum(a));
    }
    return {gather_cols(xs, inv_), want_logdet ? std::move(ld) : Tensor<B>{}};
  }

  /// Reference inverse without a cache: T − 1 full passes of the transformer over all tokens (O(T²) work).
  /// Exists to verify decode(); same guidance semantics.
  FlowOut<B> decode_uncached(const Tensor<B>& z, const Tensor<B>& cond, const Guidance<B>& g = {}) const {
    this->check_inputs("decode_uncached", z, cond);
    const long N = z.rows(), Tn = cfg_.tokens, D = cfg_.token_dim;
    const bool cfg = g.scale != 0 && cfg_.cond_features > 0;
    const Tensor<B> zs = gather_cols(z, fwd_);
    Tensor<B> xs = zs, ld(N, 1), blk(N, D, uninit);
    const Tensor<B> cond2 = cfg ? concat_rows(cond, uncond_rows(g, N)) : cond;
    for (long t = 1; t < Tn; ++t) {
      auto [a, mu] = split(net(cfg ? concat_rows(xs, xs) : xs, cond2, nullptr));
      if (cfg) {
        const double w = g.anneal ? g.scale * double(t) / double(Tn - 1) : g.scale;
        a = zip(fn::Guide{w}, slice_rows(a, 0, N), slice_rows(a, N, N));
        mu = zip(fn::Guide{w}, slice_rows(mu, 0, N), slice_rows(mu, N, N));
      }
      const Tensor<B> x_all = zip(fn::AffineArInverse{}, zs, mu, a);
      copy_block(x_all, t * D, Tn * D, xs, t * D, Tn * D, N, D);
      copy_block(a, t * D, Tn * D, blk, 0, D, N, D);
      add_inplace(ld, row_sum(blk));
    }
    return {gather_cols(xs, inv_), ld};
  }

  /// Per-token (α, μ) of the forward pass at x, in x's token order (rows x T·D each): what token t's
  /// transform is given tokens before it in the block order. Used by the causality tests and diagnostics.
  std::pair<Tensor<B>, Tensor<B>> transform_params(const Tensor<B>& x, const Tensor<B>& cond = {}) const {
    this->check_inputs("transform_params", x, cond);
    auto [a, mu] = split(net(gather_cols(x, fwd_), cond, nullptr));
    return {gather_cols(a, inv_), gather_cols(mu, inv_)};
  }

  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    proj_in.visit_parameters(v, join_name(prefix, "proj_in"));
    v(join_name(prefix, "pos_embed"), pos_embed);
    if (cfg_.cond_features > 0) class_embed.visit_parameters(v, join_name(prefix, "class_embed"));
    layers.visit_parameters(v, join_name(prefix, "layers"));
    proj_out.visit_parameters(v, join_name(prefix, "proj_out"));
  }

  Linear<B> proj_in;
  Parameter<B> pos_embed;  ///< tokens x width, indexed by the token's position in the image (not block order)
  Embedding<B> class_embed;
  Stack<TransformerLayer<B>> layers;  ///< K causal layers ("layers.{k}.…")
  Linear<B> proj_out;

 private:
  /// pos_embed in block order as one 1 x T·W row.
  Tensor<B> pos_seq() const {
    return gather_cols(reshaped(pos_embed.value, 1, cfg_.tokens * cfg_.width), pos_fwd_);
  }
  Tensor<B> uncond_rows(const Guidance<B>& g, long n) const {
    if (!g.uncond.empty()) {
      require_shape("TarBlock: guidance.uncond", g.uncond, n, cfg_.cond_features);
      return g.uncond;
    }
    return null_rows<B>(n, cfg_.cond_features);
  }
  /// Shifted transformer output (rows x T·2D, block order) for block-ordered input xs; ctx == nullptr: inference.
  Tensor<B> net(const Tensor<B>& xs, const Tensor<B>& cond, Context* ctx) const {
    const long N = xs.rows(), Tn = cfg_.tokens, D = cfg_.token_dim, W = cfg_.width;
    Tensor<B> h = ctx ? proj_in.forward(reshaped(xs, N * Tn, D), ctx->in) : proj_in.forward(reshaped(xs, N * Tn, D));
    h.reshape(N, Tn * W);
    map(h, fn::Add{}, h, pos_seq());
    h.reshape(N * Tn, W);
    if (cfg_.cond_features > 0)
      add_repeat_rows(h, ctx ? class_embed.forward(cond, ctx->emb) : class_embed.forward(cond), Tn);
    h = ctx ? layers.forward(std::move(h), ctx->layers) : layers.forward(h);
    Tensor<B> o = ctx ? proj_out.forward(std::move(h), ctx->out) : proj_out.forward(h);
    o.reshape(N, Tn * 2 * D);
    return concat_cols(Tensor<B>(N, 2 * D), slice_cols(o, 0, (Tn - 1) * 2 * D));
  }
  /// (clamped α, μ), each rows x T·D in block order, from the shifted output.
  std::pair<Tensor<B>, Tensor<B>> split(Tensor<B> p) const {
    const long N = p.rows(), Tn = cfg_.tokens, D = cfg_.token_dim;
    p.reshape(N * Tn, 2 * D);
    Tensor<B> a = zip(fn::SoftClamp{cfg_.alpha_clamp}, slice_cols(p, 0, D)), mu = slice_cols(p, D, D);
    a.reshape(N, Tn * D);
    mu.reshape(N, Tn * D);
    return {std::move(a), std::move(mu)};
  }

  Config cfg_;
  std::vector<std::int32_t> order_;
  Indices<B> fwd_, inv_, pos_fwd_, pos_inv_;
};

}  // namespace biflow
