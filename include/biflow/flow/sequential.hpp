#pragma once
// Compile-time composition: Sequential<L...> chains heterogeneous flow layers; Repeat<N, Block> stacks N
// blocks of one type. Both are flow layers themselves (nestable), sum log-dets, and can return the
// trajectory x⁰ … x^B of states between their top-level layers (the learned inverse trains on it).
#include <array>
#include <tuple>
#include <utility>
#include <vector>

#include "../nn/gradient_ready.hpp"
#include "flow_layer.hpp"

namespace biflow {

/// Result of forward_trajectory: states[0] = x, states[i+1] = output of layer i, plus the total log-det.
template <class B>
struct Trajectory {
  std::vector<Tensor<B>> states;
  Tensor<B> logdet;
};

namespace seq_detail {
template <class B>
void add_logdet(Tensor<B>& acc, const Tensor<B>& ld) {
  if (ld.empty()) return;
  if (acc.empty()) acc = ld;
  else add_inplace(acc, ld);
}
/// The policy a composite hands its children: its own, except brute force, which the composite applies once at the
/// top (its children compute their analytic log-dets meanwhile), and none when no log-det is wanted.
template <class P>
auto child_policy(const P& p) {
  if constexpr (std::is_same_v<P, logdet::BruteForce>) return logdet::analytic;
  else return p;
}
/// One child's forward: training (into c) when the composite saves, inference otherwise.
template <class L, class B, class P>
FlowOut<B> child_forward(const L& l, const Tensor<B>& x, typename L::Context* c, const Tensor<B>& cond, const P& p) {
  if (c) return l.forward(x, *c, cond, child_policy(p));
  return l.forward(x, cond, child_policy(p));
}
/// No inverse option (the plain inverse).
struct NoOption {};
/// One child's inverse: with the option when the child takes it, plain otherwise.
template <class L, class B, class Opt, class P>
FlowOut<B> child_inverse(const L& l, const Tensor<B>& y, const Tensor<B>& cond, const P& p, const Opt& opt) {
  if constexpr (!std::is_same_v<Opt, NoOption> && TakesInverseOption<L, Opt>)
    return l.inverse(y, cond, opt, child_policy(p));
  else
    return l.inverse(y, cond, child_policy(p));
}
/// The policy for a bool "want the log-det".
template <class F>
decltype(auto) with_policy(bool want_logdet, F&& f) {
  return want_logdet ? f(logdet::analytic) : f(logdet::none);
}
template <class L, class B>
void maybe_data_init(L& layer, const Tensor<B>& x, const Tensor<B>& cond) {
  if constexpr (requires { layer.data_init(x, cond); }) layer.data_init(x, cond);
}
}  // namespace seq_detail

template <class... Ls>
class Sequential : public FlowLayerBase<Sequential<Ls...>, typename std::tuple_element_t<0, std::tuple<Ls...>>::backend> {
  static_assert(sizeof...(Ls) > 0, "Sequential<>: a flow needs at least one layer.");
  static_assert((check_flow_layer_contract<Ls>() && ...));
  using B0 = typename std::tuple_element_t<0, std::tuple<Ls...>>::backend;
  static_assert((std::is_same_v<typename Ls::backend, B0> && ...),
                "Sequential<L...>: all layers must use the same backend (e.g. all Cpu<float>).");

 public:
  using B = B0;
  static constexpr const char* layer_name = "Sequential";
  static constexpr std::size_t size = sizeof...(Ls);
  /// Invertible when every layer is (one planar/radial layer makes the composition forward-only).
  static constexpr bool has_inverse = (!declares_no_inverse<Ls> && ...);
  using Context = std::tuple<typename Ls::Context...>;

  Sequential() = default;
  explicit Sequential(Ls... ls) : layers_(std::move(ls)...) {
    const long d = std::get<0>(layers_).features();
    std::size_t i = 0;
    std::apply([&](auto&... l) {
      ((l.features() == d ? void(++i)
                          : throw shape_error(detail::cat("Sequential: layer ", i, " has ", l.features(),
                                                          " features, layer 0 has ", d, "; flows keep the dimension"))),
       ...);
    }, layers_);
  }

  long features() const { return std::get<0>(layers_).features(); }
  long cond_features() const {
    long c = 0;
    std::apply([&](const auto&... l) { ((c = std::max(c, l.cond_features())), ...); }, layers_);
    return c;
  }
  std::tuple<Ls...>& layers() { return layers_; }
  const std::tuple<Ls...>& layers() const { return layers_; }

  template <LogDetPolicy P>
  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, const P& policy) const {
    return run(x, ctx, cond, policy, nullptr, std::index_sequence_for<Ls...>{});
  }
  /// Forward that also returns every intermediate state (x⁰ = x, …, x^B = z); ctx receives what backward needs.
  template <LogDetPolicy P = logdet::Analytic>
  Trajectory<B> forward_trajectory(const Tensor<B>& x, Context& ctx, const Tensor<B>& cond = {}, P = {}) const {
    return trajectory(x, &ctx, cond, P::compute);
  }
  /// Inference trajectory: the states only, no contexts kept (what a frozen F gives BiFlow's reverse training).
  template <LogDetPolicy P = logdet::Analytic>
  Trajectory<B> forward_trajectory(const Tensor<B>& x, const Tensor<B>& cond = {}, P = {}) const {
    return trajectory(x, nullptr, cond, P::compute);
  }
  template <LogDetPolicy P>
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>& cond, const P& policy) const {
    return run_inverse(y, cond, policy, seq_detail::NoOption{});
  }
  /// Inverse with an option (e.g. Guidance<B>), handed to the layers that take it.
  template <LogDetPolicy P, class Opt>
    requires(TakesInverseOption<Ls, Opt> || ...)
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>& cond, const P& policy, const Opt& opt) const {
    return run_inverse(y, cond, policy, opt);
  }
  /// `ready` (data-parallel training): told after each layer's backward that the layer's gradients are final.
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all, const GradientReady<B>* ready = nullptr) {
    Tensor<B> g = dy;
    auto one = [&](auto& layer, const auto& c, GradMode m) {
      g = backward_with_ready(layer, ready, c, g, dlogdet, m);
      if (ready) ready->done(layer);
    };
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      constexpr std::size_t n = sizeof...(Ls);
      (one(std::get<n - 1 - I>(layers_), std::get<n - 1 - I>(ctx), n - 1 - I == 0 ? mode : inner(mode)), ...);
    }(std::index_sequence_for<Ls...>{});
    return g;
  }
  /// Data-dependent initialisation: runs x through the layers, calling data_init on those that have it.
  void data_init(const Tensor<B>& x, const Tensor<B>& cond = {}) {
    Tensor<B> h = x;
    std::apply([&](auto&... l) {
      ((seq_detail::maybe_data_init(l, h, cond), h = forward_once(l, h, cond)), ...);
    }, layers_);
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (std::get<I>(layers_).visit_parameters(v, join_name(prefix, std::to_string(I))), ...);
    }(std::index_sequence_for<Ls...>{});
  }
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (visit_buffers_of(std::get<I>(layers_), v, join_name(prefix, std::to_string(I))), ...);
    }(std::index_sequence_for<Ls...>{});
  }

 private:
  template <class L>
  static Tensor<B> forward_once(const L& l, const Tensor<B>& h, const Tensor<B>& cond) {
    return l.forward(h, cond, logdet::none).y;
  }
  Trajectory<B> trajectory(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    this->check_inputs("forward_trajectory", x, cond);
    Trajectory<B> t;
    t.states.push_back(x);
    FlowOut<B> o = seq_detail::with_policy(want_logdet, [&](auto p) {
      return run(x, ctx, cond, p, &t.states, std::index_sequence_for<Ls...>{});
    });
    t.logdet = std::move(o.logdet);
    return t;
  }
  template <class P, std::size_t... I>
  FlowOut<B> run(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, const P& policy,
                 std::vector<Tensor<B>>* states, std::index_sequence<I...>) const {
    FlowOut<B> acc{x, {}};
    auto step = [&](const auto& layer, auto* c) {
      FlowOut<B> o = seq_detail::child_forward(layer, acc.y, c, cond, policy);
      acc.y = std::move(o.y);
      seq_detail::add_logdet(acc.logdet, o.logdet);
      if (states) states->push_back(acc.y);
    };
    (step(std::get<I>(layers_), ctx ? &std::get<I>(*ctx) : static_cast<std::tuple_element_t<I, Context>*>(nullptr)),
     ...);
    return acc;
  }
  template <class P, class Opt>
  FlowOut<B> run_inverse(const Tensor<B>& y, const Tensor<B>& cond, const P& policy, const Opt& opt) const {
    FlowOut<B> acc{y, {}};
    auto step = [&](const auto& l) {
      FlowOut<B> o = seq_detail::child_inverse(l, acc.y, cond, policy, opt);
      acc.y = std::move(o.y);
      seq_detail::add_logdet(acc.logdet, o.logdet);
    };
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      constexpr std::size_t n = sizeof...(Ls);
      (step(std::get<n - 1 - I>(layers_)), ...);
    }(std::index_sequence_for<Ls...>{});
    return acc;
  }
  std::tuple<Ls...> layers_;
};

/// Block count chosen at run time: Repeat<dynamic, Block>(n, make).
inline constexpr std::size_t dynamic = static_cast<std::size_t>(-1);

/// N blocks of the same type, built by a factory make(i) (so blocks can differ in masks, seeds, parity).
/// N = dynamic takes the count at construction (e.g. from a --layers flag).
template <std::size_t N, class Block>
class Repeat : public FlowLayerBase<Repeat<N, Block>, typename Block::backend> {
  static_assert(N > 0, "Repeat<N, Block>: N must be at least 1; a repeat of zero blocks is not a flow.");
  static_assert(check_flow_layer_contract<Block>());

 public:
  using B = typename Block::backend;
  static constexpr const char* layer_name = "Repeat";
  static constexpr std::size_t size = N;
  static constexpr bool has_inverse = !declares_no_inverse<Block>;
  using Context = std::conditional_t<N == dynamic, std::vector<typename Block::Context>,
                                     std::array<typename Block::Context, (N == dynamic ? 1 : N)>>;

  Repeat() = default;
  template <class Make>
    requires(N != dynamic && std::is_invocable_r_v<Block, Make&, std::size_t>)
  explicit Repeat(Make&& make) {
    build(N, make);
  }
  template <class Make>
    requires(N == dynamic && std::is_invocable_r_v<Block, Make&, std::size_t>)
  Repeat(std::size_t n, Make&& make) {
    if (n == 0) throw usage_error("Repeat<dynamic, Block>: the block count must be at least 1");
    build(n, make);
  }
  std::size_t blocks() const { return blocks_.size(); }

 private:
  template <class Make>
  void build(std::size_t n, Make& make) {
    blocks_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) blocks_.push_back(make(i));
    for (std::size_t i = 1; i < n; ++i)
      if (blocks_[i].features() != blocks_[0].features())
        throw shape_error(detail::cat("Repeat: block ", i, " has ", blocks_[i].features(), " features, block 0 has ",
                                      blocks_[0].features()));
  }

 public:
  long features() const { return blocks_[0].features(); }
  long cond_features() const { return blocks_[0].cond_features(); }
  Block& block(std::size_t i) { return blocks_.at(i); }
  const Block& block(std::size_t i) const { return blocks_.at(i); }

  template <LogDetPolicy P>
  FlowOut<B> forward_impl(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, const P& policy) const {
    return run(x, ctx, cond, policy, nullptr);
  }
  template <LogDetPolicy P = logdet::Analytic>
  Trajectory<B> forward_trajectory(const Tensor<B>& x, Context& ctx, const Tensor<B>& cond = {}, P = {}) const {
    return trajectory(x, &ctx, cond, P::compute);
  }
  /// Inference trajectory: the states only, no contexts kept.
  template <LogDetPolicy P = logdet::Analytic>
  Trajectory<B> forward_trajectory(const Tensor<B>& x, const Tensor<B>& cond = {}, P = {}) const {
    return trajectory(x, nullptr, cond, P::compute);
  }
  template <LogDetPolicy P>
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>& cond, const P& policy) const {
    return run_inverse(y, cond, policy, seq_detail::NoOption{});
  }
  /// Inverse with an option the blocks take (e.g. Guidance<B> for TarBlock).
  template <LogDetPolicy P, class Opt>
    requires TakesInverseOption<Block, Opt>
  FlowOut<B> inverse_impl(const Tensor<B>& y, const Tensor<B>& cond, const P& policy, const Opt& opt) const {
    return run_inverse(y, cond, policy, opt);
  }
  /// `ready` (data-parallel training): told after each block's backward that the block's gradients are final.
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, const Tensor<B>& dlogdet,
                     GradMode mode = GradMode::all, const GradientReady<B>* ready = nullptr) {
    Tensor<B> g = dy;
    for (std::size_t i = blocks_.size(); i-- > 0;) {
      g = backward_with_ready(blocks_[i], ready, ctx[i], g, dlogdet, i == 0 ? mode : inner(mode));
      if (ready) ready->done(blocks_[i]);
    }
    return g;
  }
  void data_init(const Tensor<B>& x, const Tensor<B>& cond = {}) {
    Tensor<B> h = x;
    for (auto& b : blocks_) {
      seq_detail::maybe_data_init(b, h, cond);
      h = b.forward(h, cond, logdet::none).y;
    }
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    for (std::size_t i = 0; i < blocks_.size(); ++i) blocks_[i].visit_parameters(v, join_name(prefix, std::to_string(i)));
  }
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    for (std::size_t i = 0; i < blocks_.size(); ++i) visit_buffers_of(blocks_[i], v, join_name(prefix, std::to_string(i)));
  }

 private:
  template <class P, class Opt>
  FlowOut<B> run_inverse(const Tensor<B>& y, const Tensor<B>& cond, const P& policy, const Opt& opt) const {
    FlowOut<B> acc{y, {}};
    for (std::size_t i = blocks_.size(); i-- > 0;) {
      FlowOut<B> o = seq_detail::child_inverse(blocks_[i], acc.y, cond, policy, opt);
      acc.y = std::move(o.y);
      seq_detail::add_logdet(acc.logdet, o.logdet);
    }
    return acc;
  }
  Trajectory<B> trajectory(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, bool want_logdet) const {
    this->check_inputs("forward_trajectory", x, cond);
    Trajectory<B> t;
    t.states.push_back(x);
    t.logdet = seq_detail::with_policy(want_logdet, [&](auto p) { return run(x, ctx, cond, p, &t.states); }).logdet;
    return t;
  }
  template <class P>
  FlowOut<B> run(const Tensor<B>& x, Context* ctx, const Tensor<B>& cond, const P& policy,
                 std::vector<Tensor<B>>* states) const {
    if constexpr (N == dynamic)
      if (ctx) ctx->resize(blocks_.size());
    FlowOut<B> acc{x, {}};
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      FlowOut<B> o = seq_detail::child_forward(blocks_[i], acc.y, ctx ? &(*ctx)[i] : nullptr, cond, policy);
      acc.y = std::move(o.y);
      seq_detail::add_logdet(acc.logdet, o.logdet);
      if (states) states->push_back(acc.y);
    }
    return acc;
  }
  std::vector<Block> blocks_;
};

/// Indexed layer access: layer<I>(sequential) or layer<I>(repeat), checked at compile time.
template <std::size_t I, class... Ls>
auto& layer(Sequential<Ls...>& s) {
  static_assert(I < sizeof...(Ls), "layer<I>(Sequential): index I is past the last layer.");
  return std::get<I>(s.layers());
}
template <std::size_t I, class... Ls>
const auto& layer(const Sequential<Ls...>& s) {
  static_assert(I < sizeof...(Ls), "layer<I>(Sequential): index I is past the last layer.");
  return std::get<I>(s.layers());
}
template <std::size_t I, std::size_t N, class Block>
auto& layer(Repeat<N, Block>& r) {
  static_assert(I < N, "layer<I>(Repeat<N, Block>): index I must be less than N.");  // dynamic: checked at run time
  return r.block(I);
}
template <std::size_t I, std::size_t N, class Block>
const auto& layer(const Repeat<N, Block>& r) {
  static_assert(I < N, "layer<I>(Repeat<N, Block>): index I must be less than N.");
  return r.block(I);
}

}  // namespace biflow
