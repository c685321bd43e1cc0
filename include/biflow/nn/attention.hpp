#pragma once
// Multi-head self-attention over sequences of `seq_len` tokens stored as consecutive rows
// (rows = batch * seq_len, cols = width). Causal (token t sees tokens <= t) or bidirectional, with a
// KV cache for one-token-at-a-time decoding. Heads are column blocks of width / heads features; they
// are read straight out of the packed [q | k | v] projection through strided batched GEMMs (no copies).
#include <cmath>

#include "linear.hpp"

namespace biflow {

/// Keys and values of the tokens decoded so far, for one attention layer (rows = batch * seq_len).
template <Backend B>
struct KVCache {
  Tensor<B> k, v;
  long len = 0;    ///< tokens already in the cache
  long batch = 0;  ///< sequences decoded together
};

template <Backend B>
class Attention {
 public:
  using backend = B;
  using T = typename B::scalar;
  struct Context {
    typename Linear<B>::Context qkv, proj;
    Tensor<B> packed;  ///< [q | k | v], rows x 3·width
    Tensor<B> probs;   ///< softmax(q kᵀ / √d), (batch·heads·seq_len) x seq_len
  };

  Attention() = default;
  /// width split into `heads` heads of width / heads features; parameters "qkv" (width -> 3·width) and "proj".
  Attention(long width, long heads, long seq_len, bool causal, Rng& rng)
      : width_(width), heads_(heads), seq_(seq_len), causal_(causal), qkv(width, 3 * width, rng),
        proj(width, width, rng) {
    if (heads <= 0 || width % heads != 0)
      throw usage_error(detail::cat("Attention: width ", width, " is not divisible by ", heads, " heads"));
    if (seq_len <= 0) throw usage_error(detail::cat("Attention: sequence length must be positive, got ", seq_len));
  }
  long in_features() const { return width_; }
  long out_features() const { return width_; }
  long heads() const { return heads_; }
  long seq_len() const { return seq_; }
  bool causal() const { return causal_; }

  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return forward(Tensor<B>(x), ctx); }
  Tensor<B> forward(Tensor<B>&& x, Context& ctx) const {
    require_cols("Attention.forward", x, width_);
    ctx.packed = qkv.forward(std::move(x), ctx.qkv);
    return proj.forward(attend(ctx.packed, ctx.probs), ctx.proj);
  }
  /// Inference: the scores of one layer live only inside the call.
  Tensor<B> forward(const Tensor<B>& x) const {
    require_cols("Attention.forward", x, width_);
    Tensor<B> probs;
    return proj.forward(attend(qkv.forward(x), probs));
  }
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    const long n = ctx.packed.rows() / seq_;
    const Tensor<B> d_o = proj.backward(ctx.proj, dy, inner(mode));
    Tensor<B> dp(ctx.probs.rows(), seq_, uninit);
    gemm_batched(d_o, view_o(), false, ctx.packed, view_v(), true, dp, view_s(), n, heads_, T(1), T(0));
    Tensor<B> dpacked(ctx.packed.rows(), 3 * width_, uninit);
    gemm_batched(ctx.probs, view_s(), true, d_o, view_o(), false, dpacked, view_v(), n, heads_, T(1), T(0));
    softmax_rows_backward(ctx.probs, dp);  // dp now holds d(scores)
    gemm_batched(dp, view_s(), false, ctx.packed, view_k(), false, dpacked, view_q(), n, heads_, scale(), T(0));
    gemm_batched(dp, view_s(), true, ctx.packed, view_q(), false, dpacked, view_k(), n, heads_, scale(), T(0));
    return qkv.backward(ctx.qkv, dpacked, mode);
  }

  /// Incremental decoding: x holds the next token of each of `batch` sequences (batch x width). Appends its
  /// key and value to the cache and returns its attention output, attending to every cached token (the
  /// causal mask is implicit: later tokens are not in the cache yet).
  Tensor<B> step(const Tensor<B>& x, KVCache<B>& cache) const {
    require_cols("Attention.step", x, width_);
    const long n = x.rows();
    if (cache.len == 0 || cache.batch != n) {
      if (cache.len != 0)
        throw shape_error(detail::cat("Attention.step: the cache holds ", cache.batch, " sequences, got ", n,
                                      " tokens"));
      cache.k = Tensor<B>(n * seq_, width_, uninit);
      cache.v = Tensor<B>(n * seq_, width_, uninit);
      cache.batch = n;
    }
    if (cache.len >= seq_)
      throw usage_error(detail::cat("Attention.step: the cache is full (", seq_, " tokens)"));
    const long i = cache.len, L = i + 1, W = width_, dh = W / heads_;
    const Tensor<B> packed = qkv.forward(x);
    copy_block(packed, W, 3 * W, cache.k, i * W, seq_ * W, n, W);
    copy_block(packed, 2 * W, 3 * W, cache.v, i * W, seq_ * W, n, W);
    const MatView q{0, 1, dh, 3 * W, 3 * W, dh}, kv{0, L, dh, W, seq_ * W, dh}, s{0, 1, L, L, heads_ * L, L},
        o{0, 1, dh, W, W, dh};
    Tensor<B> scores(n * heads_, L, uninit);
    gemm_batched(packed, q, false, cache.k, kv, true, scores, s, n, heads_, scale(), T(0));
    softmax_rows(scores, false);
    Tensor<B> out(n, W, uninit);
    gemm_batched(scores, s, false, cache.v, kv, false, out, o, n, heads_, T(1), T(0));
    ++cache.len;
    return proj.forward(out);
  }

  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    qkv.visit_parameters(v, join_name(prefix, "qkv"));
    proj.visit_parameters(v, join_name(prefix, "proj"));
  }

 private:
  /// softmax(q kᵀ/√d) v per (sample, head) from the packed projection; probs receives the attention weights.
  Tensor<B> attend(const Tensor<B>& packed, Tensor<B>& probs) const {
    const long n = batch_of(packed.rows());
    probs = Tensor<B>(n * heads_ * seq_, seq_, uninit);
    gemm_batched(packed, view_q(), false, packed, view_k(), true, probs, view_s(), n, heads_, scale(), T(0));
    softmax_rows(probs, causal_);
    Tensor<B> o(n * seq_, width_, uninit);
    gemm_batched(probs, view_s(), false, packed, view_v(), false, o, view_o(), n, heads_, T(1), T(0));
    return o;
  }
  long batch_of(long rows) const {
    if (rows % seq_ != 0)
      throw shape_error(detail::cat("Attention: ", rows, " rows are not a whole number of ", seq_,
                                    "-token sequences"));
    return rows / seq_;
  }
  T scale() const { return T(1) / std::sqrt(T(width_ / heads_)); }
  // Per (sample, head): T x dh blocks of the packed projection and of the output, T x T score blocks.
  MatView view_q() const { return {0, seq_, width_ / heads_, 3 * width_, seq_ * 3 * width_, width_ / heads_}; }
  MatView view_k() const { return {width_, seq_, width_ / heads_, 3 * width_, seq_ * 3 * width_, width_ / heads_}; }
  MatView view_v() const {
    return {2 * width_, seq_, width_ / heads_, 3 * width_, seq_ * 3 * width_, width_ / heads_};
  }
  MatView view_o() const { return {0, seq_, width_ / heads_, width_, seq_ * width_, width_ / heads_}; }
  MatView view_s() const { return {0, seq_, seq_, seq_, heads_ * seq_ * seq_, seq_ * seq_}; }

  long width_ = 0, heads_ = 1, seq_ = 1;
  bool causal_ = true;

 public:
  Linear<B> qkv, proj;
};

}  // namespace biflow
