// The backend set is open: a backend declared outside biflow (its tag, tensor and primitives in the user's own
// namespace, found by argument-dependent lookup) runs biflow's layers, models and checker unchanged. The backend
// here wraps Cpu<T> tensors and counts the calls it serves, so the test also sees that the work went through it.
#include "helpers.hpp"

namespace mine {
template <class T>
struct Wrapped {
  using scalar = T;
  static constexpr const char* name = "Wrapped";
};
/// Calls served by the wrapped backend, per primitive family (a test's own counter, not library state).
struct Calls {
  long gemm = 0, map = 0, upload = 0, total = 0;
};
inline Calls& calls() {
  static Calls c;
  return c;
}
}  // namespace mine

namespace biflow {
template <class T>
struct backend_traits<mine::Wrapped<T>> {
  static constexpr bool declared = true;
};
template <class T>
class Tensor<mine::Wrapped<T>> {
 public:
  using backend = mine::Wrapped<T>;
  using scalar = T;
  Tensor() = default;
  Tensor(long r, long c) : t(r, c) {}
  Tensor(long r, long c, uninit_t) : t(r, c, uninit) {}
  explicit Tensor(Tensor<Cpu<T>> x) : t(std::move(x)) {}
  long rows() const { return t.rows(); }
  long cols() const { return t.cols(); }
  long size() const { return t.size(); }
  bool empty() const { return t.empty(); }
  void reshape(long r, long c) { t.reshape(r, c); }
  Tensor<Cpu<T>> t;  // the backend's own primitives reach in; layers never do
};
template <class T>
class Indices<mine::Wrapped<T>> {
 public:
  Indices() = default;
  explicit Indices(Indices<Cpu<T>> x) : i(std::move(x)) {}
  long size() const { return i.size(); }
  Indices<Cpu<T>> i;
};
}  // namespace biflow

// The primitives, each forwarding to Cpu<T>'s. Written in the backend's namespace: biflow finds them by ADL.
namespace mine {
using biflow::backend_tag;
using biflow::HostMatrix;
using biflow::MatView;
template <class T>
using W = biflow::Tensor<Wrapped<T>>;
template <class T>
using C = biflow::Cpu<T>;
inline void count() { ++calls().total; }

template <class T>
W<T> backend_from_host(backend_tag<Wrapped<T>>, const HostMatrix<T>& m) {
  count();
  ++calls().upload;
  return W<T>(biflow::from_host<C<T>>(m));
}
template <class T>
HostMatrix<T> to_host(const W<T>& t) {
  count();
  return biflow::to_host(t.t);
}
template <class T>
biflow::Indices<Wrapped<T>> backend_make_indices(backend_tag<Wrapped<T>>, std::vector<std::int32_t> v) {
  count();
  return biflow::Indices<Wrapped<T>>(biflow::make_indices<C<T>>(std::move(v)));
}
template <class T>
void backend_synchronize(backend_tag<Wrapped<T>>) {}
template <class T>
biflow::MemoryUsage backend_memory_usage(backend_tag<Wrapped<T>>) {
  return biflow::memory_usage<C<T>>();
}
template <class T>
bool backend_reset_peak_memory(backend_tag<Wrapped<T>>) {
  return biflow::reset_peak_memory<C<T>>();
}
template <class T>
void gemm(const W<T>& a, bool ta, const W<T>& b, bool tb, W<T>& c, T alpha = T(1), T beta = T(0)) {
  count();
  ++calls().gemm;
  biflow::gemm(a.t, ta, b.t, tb, c.t, alpha, beta);
}
template <class T>
void gemm_batched(const W<T>& a, const MatView& va, bool ta, const W<T>& b, const MatView& vb, bool tb, W<T>& c,
                  const MatView& vc, long n_outer, long n_inner, T alpha = T(1), T beta = T(0)) {
  count();
  ++calls().gemm;
  biflow::gemm_batched(a.t, va, ta, b.t, vb, tb, c.t, vc, n_outer, n_inner, alpha, beta);
}
template <class T, class F, class... In>
void map(W<T>& out, F f, const In&... in) {
  count();
  ++calls().map;
  biflow::map(out.t, f, in.t...);
}
template <class F, class T, class... Ts>
void for_each(F f, W<T>& first, Ts&... rest) {
  count();
  biflow::for_each(f, first.t, rest.t...);
}
template <class T>
W<T> row_sum(const W<T>& x) { count(); return W<T>(biflow::row_sum(x.t)); }
template <class T>
void col_sum(const W<T>& x, W<T>& out, T beta = T(0)) { count(); biflow::col_sum(x.t, out.t, beta); }
template <class T>
T sum(const W<T>& x) { count(); return biflow::sum(x.t); }
template <class T>
T sum_sq(const W<T>& x) { count(); return biflow::sum_sq(x.t); }
template <class T>
void sum_sq_into(const W<T>& x, W<T>& out, long i) { count(); biflow::sum_sq_into(x.t, out.t, i); }
template <class T>
bool all_finite(const W<T>& x) { count(); return biflow::all_finite(x.t); }
template <class T>
void set_zero(W<T>& x) { count(); biflow::set_zero(x.t); }
template <class T>
void fill(W<T>& x, T v) { count(); biflow::fill(x.t, v); }
template <class T>
W<T> slice_cols(const W<T>& x, long c0, long n) { count(); return W<T>(biflow::slice_cols(x.t, c0, n)); }
template <class T>
W<T> concat_cols(const W<T>& a, const W<T>& b) { count(); return W<T>(biflow::concat_cols(a.t, b.t)); }
template <class T>
W<T> gather_cols(const W<T>& x, const biflow::Indices<Wrapped<T>>& idx) {
  count();
  return W<T>(biflow::gather_cols(x.t, idx.i));
}
template <class T>
void copy_block(const W<T>& src, long so, long sl, W<T>& dst, long d0, long dl, long rows, long cols) {
  count();
  biflow::copy_block(src.t, so, sl, dst.t, d0, dl, rows, cols);
}
template <class T>
void add_repeat_rows(W<T>& x, const W<T>& v, long group) { count(); biflow::add_repeat_rows(x.t, v.t, group); }
template <class T>
W<T> sum_row_groups(const W<T>& x, long group) { count(); return W<T>(biflow::sum_row_groups(x.t, group)); }
template <class T>
void softmax_rows(W<T>& s, bool causal) { count(); biflow::softmax_rows(s.t, causal); }
template <class T>
void softmax_rows_backward(const W<T>& p, W<T>& dp) { count(); biflow::softmax_rows_backward(p.t, dp.t); }
template <class T>
void layernorm_forward(const W<T>& x, const W<T>& g, const W<T>& b, T eps, W<T>& y, W<T>& mean, W<T>& rstd) {
  count();
  biflow::layernorm_forward(x.t, g.t, b.t, eps, y.t, mean.t, rstd.t);
}
template <class T>
W<T> layernorm_backward(const W<T>& x, const W<T>& g, const W<T>& mean, const W<T>& rstd, const W<T>& dy,
                        W<T>& dg, W<T>& db) {
  count();
  return W<T>(biflow::layernorm_backward(x.t, g.t, mean.t, rstd.t, dy.t, dg.t, db.t));
}
template <class T>
void fill_normal(W<T>& x, biflow::Rng& rng, T mean = T(0), T sd = T(1)) { count(); biflow::fill_normal(x.t, rng, mean, sd); }
template <class T>
void fill_uniform(W<T>& x, biflow::Rng& rng, T lo = T(0), T hi = T(1)) { count(); biflow::fill_uniform(x.t, rng, lo, hi); }
template <class T>
W<T> inverse(const W<T>& a) { count(); return W<T>(biflow::inverse(a.t)); }
}  // namespace mine

using namespace tests;
using WD = mine::Wrapped<double>;
using D = biflow::Cpu<double>;

static_assert(biflow::Backend<WD>);
static_assert(biflow::check_backend<WD>());
// Not a backend: no backend_traits specialisation.
struct NotDeclared {
  using scalar = float;
  static constexpr const char* name = "NotDeclared";
};
static_assert(!biflow::Backend<NotDeclared>);

/// The same parameters, in another backend (host round trip by name).
template <class To, class From>
void copy_parameters(const From& src, To& dst) {
  std::vector<HostMatrix<double>> values;
  const_cast<From&>(src).visit_parameters([&](const std::string&, auto& p) { values.push_back(to_host(p.value)); }, "");
  std::size_t i = 0;
  dst.visit_parameters([&](const std::string&, auto& p) {
    using B = typename std::decay_t<decltype(p.value)>::backend;
    p.value = from_host<B>(values.at(i++));
  }, "");
  REQUIRE(i == values.size());
}

TEST_CASE("a backend declared outside biflow runs an affine coupling and passes the layer checker") {
  Rng rng(5);
  auto layer = make_coupling<WD>(masks::half(4, 0), {8}, rng);
  randomize(layer, 6);
  const long before = mine::calls().gemm;
  check_layer(layer, from_host<WD>(to_host(randn<D>(7, 4, 7))));
  CHECK(mine::calls().gemm > before);  // the work went through the wrapped backend's primitives
}

TEST_CASE("a TarFlow on a backend declared outside biflow equals the same TarFlow on Cpu<double>") {
  TarFlowConfig cfg;
  cfg.image = {1, 4, 4, 2, PatchOrder::channel_major};
  cfg.width = 8;
  cfg.blocks = 2;
  cfg.layers = 1;
  cfg.heads = 2;
  cfg.num_classes = 3;
  Rng r1(11), r2(11);
  TarFlow<D> ref(cfg, r1);
  randomize(ref, 12, 0.2);
  TarFlow<WD> mod(cfg, r2);
  copy_parameters(ref, mod);
  const auto x = randn<D>(3, 16, 13);
  const auto cond = from_host<D>(data::one_hot<double>({0, 1, 2}, 4));
  const auto xw = from_host<WD>(to_host(x)), cw = from_host<WD>(to_host(cond));
  const auto fr = ref.forward(x, cond);
  const auto fw = mod.forward(xw, cw);
  CHECK((to_host(fr.y) - to_host(fw.y)).cwiseAbs().maxCoeff() == 0.0);
  CHECK((to_host(fr.logdet) - to_host(fw.logdet)).cwiseAbs().maxCoeff() == 0.0);
  // Training pass and backward: the same input gradient.
  typename TarFlow<D>::Context cr;
  typename TarFlow<WD>::Context cwx;
  ref.forward(x, cr, cond);
  mod.forward(xw, cwx, cw);
  const auto dy = randn<D>(3, 16, 14), dl = randn<D>(3, 1, 15);
  const auto gr = ref.backward(cr, dy, dl);
  const auto gw = mod.backward(cwx, from_host<WD>(to_host(dy)), from_host<WD>(to_host(dl)));
  CHECK((to_host(gr) - to_host(gw)).cwiseAbs().maxCoeff() == 0.0);
  // The exact inverse (KV-cached) recovers x on the wrapped backend too.
  CHECK((to_host(mod.inverse(fw.y, cw).y) - to_host(x)).cwiseAbs().maxCoeff() < 1e-10);
  synchronize<WD>();
  CHECK(memory_usage<WD>().peak > 0);  // the wrapped backend reports the host figures
}
