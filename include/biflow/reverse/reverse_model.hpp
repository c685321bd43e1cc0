#pragma once
// The learned reverse model G of BiFlow (Lu et al. 2025): noise z -> data in one parallel pass, trained to
// approximate the inverse of a frozen forward flow F (see reverse/trainer.hpp). Not constrained to be
// invertible.
//
//   E   = pos_embed + class_embed(cond) + w·m(w)        per-token additive embedding (m: small MLP of the
//                                                      guidance scale; w·m(w) is exactly 0 at w = 0)
//   u   = proj_in(z tokens) + E
//   for stage j = 0 .. S'−1:  u = Stage_j(u);  hidden[j] = u
//   out = proj_out(u)
//
// Stage j runs "against" the forward trajectory: hidden[j] is trained towards x^{i_j} with i_j decreasing to
// 0 (see ReverseConfig::target_index). With `bottleneck` every stage state is forced into input space
// (hidden distillation): hidden[j] = readout_j(u) has the data's token shape and the next stage re-embeds it,
// u = embed_{j+1}(hidden[j]) + E. With `denoise_stage` one extra stage maps the noisy data x̃ to clean x
// (learned denoising). Rows hold T·D values, token-major, exactly like the forward trajectory's states.
#include <vector>

#include "../nn/embedding.hpp"
#include "../nn/gradient_ready.hpp"
#include "../nn/linear.hpp"
#include "../nn/mlp.hpp"
#include "stages.hpp"

namespace biflow {

struct ReverseConfig {
  long tokens = 1;       ///< T (1 for vector data)
  long token_dim = 0;    ///< D values per token (T·D = the forward flow's features)
  long width = 64;       ///< hidden width C
  long stages = 4;       ///< S stages aligned with the forward trajectory (not counting the denoise stage)
  long layers = 1;       ///< layers (or MLP blocks) per stage
  long heads = 4;        ///< attention heads (transformer stages)
  double mlp_ratio = 4.0;
  long cond_features = 0;      ///< context columns (classes + 1 with a null label); 0 = unconditional
  bool guidance = false;       ///< take the guidance scale w as an input (training-time CFG)
  bool bottleneck = false;     ///< stage states live in input space (hidden distillation)
  bool denoise_stage = false;  ///< one more stage from the noisy x̃ to clean x (learned denoising)
  long total_stages() const { return stages + (denoise_stage ? 1 : 0); }
  long features() const { return tokens * token_dim; }
  StageShape stage_shape() const { return {tokens, width, layers, heads, mlp_ratio}; }
  /// Which state of a forward trajectory with `blocks` blocks stage j (< stages) is aligned with:
  /// ⌊(S − 1 − j)·B / S⌋, so the last aligned stage meets x⁰ and the stages are spread evenly over the blocks.
  long target_index(long j, long blocks) const { return ((stages - 1 - j) * blocks) / stages; }
  void validate() const {
    if (tokens <= 0 || token_dim <= 0 || width <= 0)
      throw usage_error(detail::cat("ReverseConfig: tokens, token_dim and width must be positive, got ", tokens, ", ",
                                    token_dim, ", ", width));
    if (stages <= 0) throw usage_error(detail::cat("ReverseConfig: need at least one stage, got ", stages));
    if (cond_features < 0) throw usage_error(detail::cat("ReverseConfig: cond_features < 0: ", cond_features));
  }
};

template <Backend B, template <Backend> class Stage = TransformerStage>
class ReverseModel {
 public:
  using backend = B;
  using T = typename B::scalar;
  using StageT = Stage<B>;
  static_assert(Module<StageT>, "ReverseModel: a stage must be an nn Module over (N·T x width) rows (see "
                                "reverse/stages.hpp for TransformerStage and MlpStage)");
  struct Context {
    long n = 0;
    Tensor<B> w, gm;  ///< guidance scales (N x 1) and m(w) (N x C)
    typename Linear<B>::Context in, out;
    typename Embedding<B>::Context emb;
    typename MLP<B, act::SiLU>::Context gmlp;
    std::vector<typename StageT::Context> stages;
    std::vector<typename Linear<B>::Context> readout, embed;
    std::vector<Tensor<B>> hidden;  ///< state after each stage: N·T x C (N·T x D with bottleneck)
  };

  ReverseModel() = default;
  ReverseModel(const ReverseConfig& c, Rng& rng) : cfg_(c) {
    c.validate();
    const long Tn = c.tokens, D = c.token_dim, W = c.width, S = c.total_stages();
    proj_in = Linear<B>(D, W, rng);
    Tensor<B> pos(Tn, W, uninit);
    fill_normal(pos, rng, T(0), T(0.02));
    pos_embed = Parameter<B>(std::move(pos));
    if (c.cond_features > 0) class_embed = Embedding<B>(c.cond_features, W, rng);
    if (c.guidance) guidance_embed = MLP<B, act::SiLU>({1, W, W}, rng);
    for (long j = 0; j < S; ++j) {
      stages.emplace_back(c.stage_shape(), rng);
      if (c.bottleneck) {
        readouts.emplace_back(W, D, rng);
        embeds.push_back(j == 0 ? Linear<B>() : Linear<B>(D, W, rng));  // stage 0 is fed by proj_in
      }
    }
    if (!c.bottleneck) proj_out = Linear<B>(W, D, rng);
  }

  const ReverseConfig& config() const { return cfg_; }
  long features() const { return cfg_.features(); }
  long cond_features() const { return cfg_.cond_features; }
  long num_stages() const { return cfg_.total_stages(); }

  /// G(z; cond, w): z is N x T·D (the forward flow's output), cond N x cond_features (or empty when
  /// unconditional), w N x 1 guidance scales (empty = 0; only for models built with `guidance`).
  /// Returns N x T·D in the forward flow's token space; ctx keeps what backward needs and the hidden states.
  Tensor<B> forward(const Tensor<B>& z, const Tensor<B>& cond, const Tensor<B>& w, Context& ctx) const {
    return run(z, cond, w, &ctx);
  }
  /// Inference pass (what generate() runs): nothing saved, no hidden states kept.
  Tensor<B> forward(const Tensor<B>& z, const Tensor<B>& cond = {}, const Tensor<B>& w = {}) const {
    return run(z, cond, w, nullptr);
  }

  /// dout: N x T·D gradient of the output; dhidden[j] (j < S' − 1, each empty or shaped as ctx.hidden[j])
  /// gradients reaching the stage states from hidden losses. Accumulates parameter gradients, returns dz.
  /// mode: G's input is noise, so a trainer asks for GradMode::params_only (no dz).
  /// ready (data-parallel training): told stage by stage that gradients are final (the input projection and the
  /// embeddings, which every stage feeds, only at the end).
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dout, const std::vector<Tensor<B>>& dhidden = {},
                     GradMode mode = GradMode::all, const GradientReady<B>* ready = nullptr) {
    auto finished = [ready](auto& part) {
      if (ready) ready->done(part);
    };
    const GradMode m = inner(mode);
    const long N = ctx.n, Tn = cfg_.tokens, D = cfg_.token_dim, W = cfg_.width, S = num_stages();
    require_shape("ReverseModel.backward: dout", dout, N, Tn * D);
    if (long(dhidden.size()) > S - 1)
      throw shape_error(detail::cat("ReverseModel.backward: ", dhidden.size(), " hidden gradients for ", S - 1,
                                    " hidden states"));
    auto hidden_grad = [&](long j) -> const Tensor<B>* {
      if (j >= long(dhidden.size()) || dhidden[std::size_t(j)].empty()) return nullptr;
      const Tensor<B>& g = dhidden[std::size_t(j)];
      require_shape(detail::cat("ReverseModel.backward: dhidden[", j, "]").c_str(), g, ctx.hidden[std::size_t(j)].rows(),
                    ctx.hidden[std::size_t(j)].cols());
      return &g;
    };
    Tensor<B> dE(N * Tn, W), dz;
    if (cfg_.bottleneck) {
      Tensor<B> g = reshaped(dout, N * Tn, D);
      for (long j = S; j-- > 0;) {
        const auto js = std::size_t(j);
        if (j + 1 < S)
          if (const Tensor<B>* h = hidden_grad(j)) add_inplace(g, *h);
        Tensor<B> du = stages[js].backward(ctx.stages[js], readouts[js].backward(ctx.readout[js], g, m), m);
        finished(readouts[js]);
        finished(stages[js]);
        add_inplace(dE, du);
        if (j > 0) {
          g = embeds[js].backward(ctx.embed[js], du, m);
          finished(embeds[js]);
        } else {
          dz = proj_in.backward(ctx.in, du, mode);
        }
      }
    } else {
      Tensor<B> du = proj_out.backward(ctx.out, reshaped(dout, N * Tn, D), m);
      finished(proj_out);
      for (long j = S; j-- > 0;) {
        const auto js = std::size_t(j);
        if (j + 1 < S)
          if (const Tensor<B>* h = hidden_grad(j)) add_inplace(du, *h);
        du = stages[js].backward(ctx.stages[js], du, m);
        finished(stages[js]);
      }
      add_inplace(dE, du);
      dz = proj_in.backward(ctx.in, du, mode);
    }
    embedding_backward(ctx, dE, mode);
    if (!wants_input_grad(mode)) return {};
    dz.reshape(N, Tn * D);
    return dz;
  }

  /// One-pass generation from given noise: G(z; cond, w), the inference pass. (sample(flow, n, rng) is the
  /// name for drawing the noise too; here the caller supplies z.)
  Tensor<B> generate(const Tensor<B>& z, const Tensor<B>& cond = {}, const Tensor<B>& w = {}) const {
    return forward(z, cond, w);
  }
  /// Inference-time classifier-free guidance on G's outputs (2 passes, run as one batch of 2N rows):
  /// G(z; c) + w·(G(z; c) − G(z; uncond)); uncond empty = the null label (last column).
  Tensor<B> generate_guided(const Tensor<B>& z, const Tensor<B>& cond, double w, const Tensor<B>& uncond = {}) const {
    if (cfg_.cond_features <= 0)
      throw usage_error("ReverseModel.generate_guided: the model is unconditional (cond_features = 0)");
    const long N = z.rows();
    Tensor<B> u = uncond;
    if (u.empty()) u = null_rows<B>(N, cfg_.cond_features);
    require_shape("ReverseModel.generate_guided: uncond", u, N, cfg_.cond_features);
    const Tensor<B> both =
        generate(concat_rows(z, z), concat_rows(cond, u), cfg_.guidance ? Tensor<B>(2 * N, 1) : Tensor<B>{});
    return zip(fn::Guide{w}, slice_rows(both, 0, N), slice_rows(both, N, N));
  }
  [[deprecated("biflow 0.3: ReverseModel::sample(z, …) is now generate(z, …)")]]
  Tensor<B> sample(const Tensor<B>& z, const Tensor<B>& cond = {}, const Tensor<B>& w = {}) const {
    return generate(z, cond, w);
  }
  [[deprecated("biflow 0.3: ReverseModel::sample_guided is now generate_guided")]]
  Tensor<B> sample_guided(const Tensor<B>& z, const Tensor<B>& cond, double w, const Tensor<B>& uncond = {}) const {
    return generate_guided(z, cond, w, uncond);
  }

  /// Parameters "proj_in", "pos_embed", "class_embed", "guidance_embed.{0,2}", "stages.{j}.…",
  /// "stages.{j}.readout" / "stages.{j}.embed" (bottleneck), "proj_out".
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    proj_in.visit_parameters(v, join_name(prefix, "proj_in"));
    v(join_name(prefix, "pos_embed"), pos_embed);
    if (cfg_.cond_features > 0) class_embed.visit_parameters(v, join_name(prefix, "class_embed"));
    if (cfg_.guidance) guidance_embed.visit_parameters(v, join_name(prefix, "guidance_embed"));
    for (std::size_t j = 0; j < stages.size(); ++j) {
      const std::string p = join_name(prefix, "stages." + std::to_string(j));
      stages[j].visit_parameters(v, p);
      if (cfg_.bottleneck) {
        readouts[j].visit_parameters(v, join_name(p, "readout"));
        if (j > 0) embeds[j].visit_parameters(v, join_name(p, "embed"));
      }
    }
    if (!cfg_.bottleneck) proj_out.visit_parameters(v, join_name(prefix, "proj_out"));
  }

  Linear<B> proj_in;
  Parameter<B> pos_embed;  ///< tokens x width
  Embedding<B> class_embed;
  MLP<B, act::SiLU> guidance_embed;  ///< m in w·m(w)
  std::vector<StageT> stages;
  std::vector<Linear<B>> readouts, embeds;  ///< bottleneck only
  Linear<B> proj_out;                       ///< without bottleneck

 private:
  Tensor<B> run(const Tensor<B>& z, const Tensor<B>& cond, const Tensor<B>& w, Context* ctx) const {
    check_inputs("forward", z, cond, w);
    const long N = z.rows(), Tn = cfg_.tokens, D = cfg_.token_dim, S = num_stages();
    const Tensor<B> E = embedding(N, cond, w, ctx);
    const Tensor<B> zr = reshaped(z, N * Tn, D);
    Tensor<B> u = ctx ? proj_in.forward(zr, ctx->in) : proj_in.forward(zr);
    add_inplace(u, E);
    if (ctx) {
      ctx->n = N;
      ctx->stages.resize(std::size_t(S));
      ctx->hidden.assign(std::size_t(S), Tensor<B>{});
      if (cfg_.bottleneck) {
        ctx->readout.resize(std::size_t(S));
        ctx->embed.resize(std::size_t(S));
      }
    }
    Tensor<B> last;  // the last stage's read-out (bottleneck, inference)
    for (long j = 0; j < S; ++j) {
      const auto js = std::size_t(j);
      u = ctx ? stages[js].forward(u, ctx->stages[js]) : stages[js].forward(u);
      if (cfg_.bottleneck) {
        Tensor<B> h = ctx ? readouts[js].forward(u, ctx->readout[js]) : readouts[js].forward(u);
        if (j + 1 < S) {
          u = ctx ? embeds[js + 1].forward(h, ctx->embed[js + 1]) : embeds[js + 1].forward(h);
          add_inplace(u, E);
        }
        if (ctx) ctx->hidden[js] = std::move(h);
        else last = std::move(h);
      } else if (ctx) {
        ctx->hidden[js] = u;
      }
    }
    Tensor<B> out = cfg_.bottleneck ? (ctx ? ctx->hidden.back() : std::move(last))
                                    : (ctx ? proj_out.forward(std::move(u), ctx->out) : proj_out.forward(u));
    out.reshape(N, Tn * D);
    return out;
  }
  void check_inputs(const char* what, const Tensor<B>& z, const Tensor<B>& cond, const Tensor<B>& w) const {
    const std::string ctx = detail::cat("ReverseModel.", what);
    require_cols((ctx + ": z").c_str(), z, cfg_.features());
    if (cfg_.cond_features > 0) {
      if (cond.empty())
        throw shape_error(detail::cat(ctx, ": the model is class-conditional (", cfg_.cond_features,
                                      " context columns) but no context was given"));
      require_shape((ctx + ": cond").c_str(), cond, z.rows(), cfg_.cond_features);
    } else if (!cond.empty()) {
      throw shape_error(detail::cat(ctx, ": the model is unconditional but a context with ", cond.cols(),
                                    " columns was given"));
    }
    if (!w.empty()) {
      if (!cfg_.guidance)
        throw usage_error(detail::cat(ctx, ": guidance scales given, but the model was built without "
                                           "ReverseConfig::guidance"));
      require_shape((ctx + ": w").c_str(), w, z.rows(), 1);
    }
  }
  Tensor<B> embedding(long N, const Tensor<B>& cond, const Tensor<B>& w, Context* ctx) const {
    const long Tn = cfg_.tokens, W = cfg_.width;
    Tensor<B> E = broadcast_rows(reshaped(pos_embed.value, 1, Tn * W), N);
    E.reshape(N * Tn, W);
    if (cfg_.cond_features > 0) add_repeat_rows(E, ctx ? class_embed.forward(cond, ctx->emb) : class_embed.forward(cond), Tn);
    if (cfg_.guidance) {
      Tensor<B> ws = w.empty() ? Tensor<B>(N, 1) : w;
      Tensor<B> gm = ctx ? guidance_embed.forward(ws, ctx->gmlp) : guidance_embed.forward(ws);
      add_repeat_rows(E, zip(fn::Mul{}, gm, ws), Tn);
      if (ctx) {
        ctx->w = std::move(ws);
        ctx->gm = std::move(gm);
      }
    }
    return E;
  }
  /// The embeddings' inputs (labels, guidance scales) are never differentiated: parameter gradients only.
  void embedding_backward(const Context& ctx, Tensor<B>& dE, GradMode mode) {
    const long N = ctx.n, Tn = cfg_.tokens, W = cfg_.width;
    if (mode == GradMode::input_only) return;
    if (cfg_.cond_features > 0 || cfg_.guidance) {
      const Tensor<B> per_sample = sum_row_groups(dE, Tn);
      if (cfg_.cond_features > 0) class_embed.backward(ctx.emb, per_sample, GradMode::params_only);
      if (cfg_.guidance) guidance_embed.backward(ctx.gmlp, zip(fn::Mul{}, per_sample, ctx.w), GradMode::params_only);
    }
    if (wants_grad(mode, pos_embed)) {
      dE.reshape(N, Tn * W);
      Tensor<B> gpos;
      col_sum(dE, gpos);
      gpos.reshape(Tn, W);
      add_inplace(pos_embed.grad, gpos);
    }
  }

  ReverseConfig cfg_;
};

}  // namespace biflow
