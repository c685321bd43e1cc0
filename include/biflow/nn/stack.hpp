#pragma once
// Stack<M>: n modules of one type applied in order — the nn-module counterpart of the flow composition Repeat.
// It is a module itself (training and inference passes, gradient modes, parameters named "{i}.…"), so models
// hold their transformer layers in one instead of each writing the same three loops.
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "module.hpp"

namespace biflow {

template <class M>
class Stack {
  static_assert(check_module_contract<M>());

 public:
  using backend = typename M::backend;
  using B = backend;
  struct Context {
    std::vector<typename M::Context> items;
  };

  Stack() = default;
  /// n modules made by make(i).
  template <class Make>
    requires std::is_invocable_r_v<M, Make&, std::size_t>
  Stack(std::size_t n, Make&& make) {
    items_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      items_.push_back(make(i));
      if (i > 0 && items_[i].in_features() != items_[i - 1].out_features())
        throw shape_error(detail::cat("Stack: module ", i, " takes ", items_[i].in_features(), " features, module ",
                                      i - 1, " gives ", items_[i - 1].out_features()));
    }
  }

  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  M& operator[](std::size_t i) { return items_[i]; }
  const M& operator[](std::size_t i) const { return items_[i]; }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  long in_features() const { return items_.empty() ? 0 : items_.front().in_features(); }
  long out_features() const { return items_.empty() ? 0 : items_.back().out_features(); }

  /// Training pass: each module's context in ctx.items.
  Tensor<B> forward(const Tensor<B>& x, Context& ctx) const { return forward(Tensor<B>(x), ctx); }
  /// Each module gets its input as an rvalue, so one that keeps it in its context takes it without a copy.
  Tensor<B> forward(Tensor<B>&& x, Context& ctx) const {
    ctx.items.resize(items_.size());
    Tensor<B> h = std::move(x);
    for (std::size_t i = 0; i < items_.size(); ++i) h = items_[i].forward(std::move(h), ctx.items[i]);
    return h;
  }
  /// Inference pass: nothing saved.
  Tensor<B> forward(const Tensor<B>& x) const {
    Tensor<B> h = x;
    for (const auto& m : items_) h = m.forward(h);
    return h;
  }
  /// The first module gets `mode`; the inner ones must pass input gradients on (inner(mode)).
  Tensor<B> backward(const Context& ctx, const Tensor<B>& dy, GradMode mode = GradMode::all) {
    if (ctx.items.size() != items_.size())
      throw usage_error(detail::cat("Stack.backward: the context holds ", ctx.items.size(), " modules' state, the stack has ",
                                    items_.size(), " (run forward(x, ctx) first)"));
    const std::size_t n = items_.size();
    if (n == 0) return dy;
    Tensor<B> g = items_[n - 1].backward(ctx.items[n - 1], dy, n == 1 ? mode : inner(mode));
    for (std::size_t i = n - 1; i-- > 0;) g = items_[i].backward(ctx.items[i], g, i == 0 ? mode : inner(mode));
    return g;
  }
  template <class V>
  void visit_parameters(V&& v, const std::string& prefix) {
    for (std::size_t i = 0; i < items_.size(); ++i) items_[i].visit_parameters(v, join_name(prefix, std::to_string(i)));
  }
  template <class V>
  void visit_buffers(V&& v, const std::string& prefix) {
    for (std::size_t i = 0; i < items_.size(); ++i) visit_buffers_of(items_[i], v, join_name(prefix, std::to_string(i)));
  }

 private:
  std::vector<M> items_;
};

}  // namespace biflow
