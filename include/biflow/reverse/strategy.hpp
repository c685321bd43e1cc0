#pragma once
// Training strategies for the learned reverse model (policies of ReverseTrainer). All of them compare the
// final output with x (the trainer does that, with the output distance); they differ in what they ask of
// G's intermediate states h^j, given the forward trajectory's states x^{i_j} (ReverseConfig::target_index):
//   NaiveDistillation    nothing: L = D(x, G(F(x)))
//   HiddenDistillation   Σ_j w_j D(x^{i_j}, h^j); G built with `bottleneck`, so h^j lives in input space
//   HiddenAlignment      Σ_j w_j D(x^{i_j}, φ_j(h^j)) with learnable projection heads φ_j = Linear ∘ LayerNorm
//                        (the LayerNorm is the "normalise hidden states before alignment" norm control; off
//                        with normalize = false). The heads are trained with G and not used for sampling.
#include <string>
#include <vector>

#include "../nn/layer_norm.hpp"
#include "../nn/linear.hpp"
#include "distance.hpp"
#include "reverse_model.hpp"

namespace biflow {

namespace detail {
inline double term_weight(const std::vector<double>& w, std::size_t j) { return w.empty() ? 1.0 : w.at(j); }
}  // namespace detail

/// A training strategy for the reverse model: what it asks of G's hidden states. ReverseTrainer checks it with
/// check_reverse_strategy<S, B>() (one sentence per missing member).
template <class S, class B>
concept ReverseStrategy = requires(S& s, const S& cs, const ReverseConfig& c, const std::vector<Tensor<B>>& v,
                                   std::vector<Tensor<B>>& dv, const std::vector<double>& w) {
  { cs.name() } -> std::convertible_to<std::string>;
  cs.check(c);
  { s.hidden_loss(c, v, v, Mse{}, w, dv, static_cast<std::vector<double>*>(nullptr)) } -> std::convertible_to<double>;
  s.visit_parameters(detail::AnyVisitor{}, std::string{});
};
template <class S, class B>
constexpr bool check_reverse_strategy() {
  static_assert(requires(const S& cs) {
    { cs.name() } -> std::convertible_to<std::string>;
  }, "reverse strategy: missing `std::string name() const`");
  static_assert(requires(const S& cs, const ReverseConfig& c) { cs.check(c); },
                "reverse strategy: missing `void check(const ReverseConfig&) const` (throw usage_error when G's "
                "configuration does not suit the strategy; may do nothing)");
  static_assert(requires(S& s, const ReverseConfig& c, const std::vector<Tensor<B>>& v, std::vector<Tensor<B>>& dv,
                         const std::vector<double>& w) {
    { s.hidden_loss(c, v, v, Mse{}, w, dv, static_cast<std::vector<double>*>(nullptr)) } -> std::convertible_to<double>;
  }, "reverse strategy: missing `template <Backend B, class Dist> double hidden_loss(const ReverseConfig&, hidden, "
     "targets, const Dist&, const std::vector<double>& weights, std::vector<Tensor<B>>& dhidden, "
     "std::vector<double>* terms)` (the loss on G's stage states and its gradient per stage)");
  static_assert(requires(S& s) { s.visit_parameters(detail::AnyVisitor{}, std::string{}); },
                "reverse strategy: missing `template <class V> void visit_parameters(V&&, const std::string&)` (its "
                "trainable heads, or nothing)");
  return true;
}

struct NaiveDistillation {
  std::string name() const { return "naive"; }
  void check(const ReverseConfig&) const {}
  template <Backend B, class Dist>
  double hidden_loss(const ReverseConfig&, const std::vector<Tensor<B>>&, const std::vector<Tensor<B>>&, const Dist&,
                     const std::vector<double>&, std::vector<Tensor<B>>& dhidden, std::vector<double>* terms = nullptr) {
    dhidden.clear();
    if (terms) terms->clear();
    return 0.0;
  }
  template <class V>
  void visit_parameters(V&&, const std::string&) {}
};

struct HiddenDistillation {
  std::string name() const { return "hidden_distillation"; }
  void check(const ReverseConfig& c) const {
    if (!c.bottleneck)
      throw usage_error("HiddenDistillation: compares G's stage states with the trajectory directly, so they must "
                        "be in input space; build the ReverseModel with ReverseConfig::bottleneck = true");
  }
  template <Backend B, class Dist>
  double hidden_loss(const ReverseConfig& c, const std::vector<Tensor<B>>& hidden,
                     const std::vector<Tensor<B>>& targets, const Dist& d, const std::vector<double>& weights,
                     std::vector<Tensor<B>>& dhidden, std::vector<double>* terms = nullptr) {
    check(c);
    dhidden.assign(targets.size(), Tensor<B>{});
    if (terms) terms->assign(targets.size(), 0.0);
    double total = 0;
    for (std::size_t j = 0; j < targets.size(); ++j) {
      const long N = targets[j].rows();
      const double wj = detail::term_weight(weights, j);
      Tensor<B> g;
      const double l = distance_loss(d, reshaped(hidden.at(j), N, c.features()), targets[j], wj, g);
      g.reshape(N * c.tokens, c.token_dim);
      dhidden[j] = std::move(g);
      if (terms) (*terms)[j] = l;
      total += wj * l;
    }
    return total;
  }
  template <class V>
  void visit_parameters(V&&, const std::string&) {}
};

template <Backend B>
class HiddenAlignment {
 public:
  using backend = B;
  struct Head {
    LayerNorm<B> norm;
    Linear<B> proj;
  };
  HiddenAlignment() = default;
  /// One head φ_j per aligned hidden state of a ReverseModel built from c (c.total_stages() − 1 of them).
  HiddenAlignment(const ReverseConfig& c, Rng& rng, bool normalize = true) : cfg_(c), normalize_(normalize) {
    const long in = c.bottleneck ? c.token_dim : c.width;
    for (long j = 0; j + 1 < c.total_stages(); ++j) heads.push_back({LayerNorm<B>(in), Linear<B>(in, c.token_dim, rng)});
  }
  std::string name() const { return "hidden_alignment"; }
  bool normalize() const { return normalize_; }
  void check(const ReverseConfig& c) const {
    if (long(heads.size()) != c.total_stages() - 1 || c.token_dim != cfg_.token_dim || c.width != cfg_.width ||
        c.bottleneck != cfg_.bottleneck)
      throw usage_error(detail::cat("HiddenAlignment: the heads were built for ", heads.size() + 1, " stages of width ",
                                    cfg_.width, ", the reverse model has ", c.total_stages(), " of width ", c.width,
                                    "; build both from the same ReverseConfig"));
  }
  /// φ_j(h^j) as N x T·D rows (for inspection and tests).
  Tensor<B> project(std::size_t j, const Tensor<B>& h, long n) const {
    Tensor<B> y = heads.at(j).proj.forward(normalize_ ? heads[j].norm.forward(h) : h);
    y.reshape(n, cfg_.features());
    return y;
  }
  template <class Dist>
  double hidden_loss(const ReverseConfig& c, const std::vector<Tensor<B>>& hidden,
                     const std::vector<Tensor<B>>& targets, const Dist& d, const std::vector<double>& weights,
                     std::vector<Tensor<B>>& dhidden, std::vector<double>* terms = nullptr) {
    check(c);
    if (targets.size() > heads.size())
      throw usage_error(detail::cat("HiddenAlignment: ", targets.size(), " targets for ", heads.size(), " heads"));
    dhidden.assign(targets.size(), Tensor<B>{});
    if (terms) terms->assign(targets.size(), 0.0);
    double total = 0;
    for (std::size_t j = 0; j < targets.size(); ++j) {
      const long N = targets[j].rows();
      const double wj = detail::term_weight(weights, j);
      typename LayerNorm<B>::Context cn;
      typename Linear<B>::Context cl;
      Head& h = heads[j];
      Tensor<B> y = h.proj.forward(normalize_ ? h.norm.forward(hidden.at(j), cn) : hidden.at(j), cl);
      y.reshape(N, c.features());
      Tensor<B> g;
      const double l = distance_loss(d, y, targets[j], wj, g);
      g.reshape(N * c.tokens, c.token_dim);
      Tensor<B> dh = h.proj.backward(cl, g);
      dhidden[j] = normalize_ ? h.norm.backward(cn, dh) : std::move(dh);
      if (terms) (*terms)[j] = l;
      total += wj * l;
    }
    return total;
  }
  /// Parameters "{j}.norm.weight", "{j}.proj.weight", … (the norm's only when normalize).
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    for (std::size_t j = 0; j < heads.size(); ++j) {
      const std::string p = join_name(prefix, std::to_string(j));
      if (normalize_) heads[j].norm.visit_parameters(v, join_name(p, "norm"));
      heads[j].proj.visit_parameters(v, join_name(p, "proj"));
    }
  }
  std::vector<Head> heads;

 private:
  ReverseConfig cfg_;
  bool normalize_ = true;
};

}  // namespace biflow
