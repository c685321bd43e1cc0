#pragma once
// Parameters and their PyTorch-style names ("3.net.layers.0.weight"), visited by optimisers, EMA,
// gradient clipping and checkpoint I/O.
#include <string>
#include <utility>
#include <vector>

#include "../backend/ops.hpp"
#include "../core/buffer.hpp"

namespace biflow {

/// A trainable tensor and its gradient (same shape; backward accumulates into grad). A frozen parameter gets no
/// gradient: backward skips its weight-gradient work (GEMMs, sums) and leaves grad as it is, while still
/// returning input gradients — what scoring a frozen flow (score denoising) or training G against a frozen F needs.
/// Set it per parameter, or for a whole model with FrozenScope.
template <class B>
struct Parameter {
  static_assert(check_backend<B>());  // a backend missing a primitive fails here, with its name
  Tensor<B> value;
  Tensor<B> grad;
  bool frozen = false;
  Parameter() = default;
  explicit Parameter(Tensor<B> v) : value(std::move(v)), grad(value.rows(), value.cols()) {}
};

/// What a backward pass computes (tiny-cuda-nn's gradient modes):
///   all          the input gradient and every (non-frozen) parameter's gradient, accumulated into grad
///   input_only   the input gradient only; parameter gradients untouched (scoring or differentiating through a
///                frozen model: F in BiFlow's reverse training, score denoising, a frozen feature network)
///   params_only  parameter gradients only; the returned input gradient may be empty (the first layer of a model
///                whose input is data: its dx would be thrown away)
/// Composites pass `mode` to their first child and `inner(mode)` to the others, whose input gradients feed the
/// next child's backward.
enum class GradMode { all, input_only, params_only };
constexpr bool wants_input_grad(GradMode m) { return m != GradMode::params_only; }
constexpr GradMode inner(GradMode m) { return m == GradMode::params_only ? GradMode::all : m; }
/// Whether backward under `m` computes p's gradient: not in input_only mode, and not for a frozen parameter.
template <class B>
bool wants_grad(GradMode m, const Parameter<B>& p) {
  return m != GradMode::input_only && !p.frozen;
}

/// A real buffer over tensor t (shape [cols] for one row, else [rows, cols]); assign receives the new values as a
/// tensor of t's shape.
template <class B, class Assign>
Buffer tensor_buffer(const Tensor<B>& t, Assign&& assign, bool structural = true) {
  using T = typename B::scalar;
  const HostMatrix<T> h = to_host(t);
  Buffer b{Buffer::Kind::real, structural, {}, {h.data(), h.data() + h.size()}, {}};
  b.shape = t.rows() == 1 ? std::vector<long>{t.cols()} : std::vector<long>{t.rows(), t.cols()};
  b.assign = [a = std::forward<Assign>(assign), r = t.rows(), c = t.cols()](const std::vector<double>& v) {
    HostMatrix<T> m(r, c);
    for (long i = 0; i < m.size(); ++i) m.data()[i] = T(v[std::size_t(i)]);
    a(from_host<B>(m));
  };
  return b;
}

/// Joins name components with '.' as torch.nn.Module.state_dict() does.
inline std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

namespace detail {
/// A visitor accepting any parameter (used to test for visit_parameters in concepts).
struct AnyVisitor {
  template <class P>
  void operator()(const std::string&, P&) const {}
};
}  // namespace detail

/// Anything with visit_parameters(visitor, prefix).
template <class M>
concept HasParameters = requires(M& m) { m.visit_parameters(detail::AnyVisitor{}, std::string{}); };

/// Sets every gradient of m to zero.
template <HasParameters M>
void zero_grad(M& m) {
  m.visit_parameters([](const std::string&, auto& p) { set_zero(p.grad); }, "");
}

/// Freezes every parameter of a model for the scope's lifetime and restores each one's previous state after.
template <HasParameters M>
class FrozenScope {
 public:
  explicit FrozenScope(M& m) : m_(m) {
    m_.visit_parameters([&](const std::string&, auto& p) {
      was_.push_back(p.frozen);
      p.frozen = true;
    }, "");
  }
  ~FrozenScope() {
    std::size_t i = 0;
    m_.visit_parameters([&](const std::string&, auto& p) { p.frozen = was_[i++]; }, "");
  }
  FrozenScope(const FrozenScope&) = delete;
  FrozenScope& operator=(const FrozenScope&) = delete;

 private:
  M& m_;
  std::vector<bool> was_;
};

/// Freezes every parameter of m (requires_grad = False for the whole model): backward then leaves their
/// gradients alone and optimisers skip them. Undo with unfreeze.
template <HasParameters M>
void freeze(M& m) {
  m.visit_parameters([](const std::string&, auto& p) { p.frozen = true; }, "");
}
template <HasParameters M>
void unfreeze(M& m) {
  m.visit_parameters([](const std::string&, auto& p) { p.frozen = false; }, "");
}

/// Number of scalar parameters in m.
template <HasParameters M>
long parameter_count(M& m) {
  long n = 0;
  m.visit_parameters([&](const std::string&, auto& p) { n += p.value.size(); }, "");
  return n;
}

}  // namespace biflow
