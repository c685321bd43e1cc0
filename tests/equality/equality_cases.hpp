// Backend equality cases: every primitive, nn module, flow layer, reverse block, distance, optimiser step and full
// training step computed on the backend under test (BIFLOW_EQ_BACKEND) and on the reference Cpu<double>, from the
// same inputs and parameters, compared at float tolerances.
//
// The same cases are compiled twice: tests/equality/test_equality_cpu.cpp (B = Cpu<float>: runs on every machine,
// keeps the cases and their tolerances honest) and tests/cuda/equality_part1..4.cu (B = Cuda<float>: runs on a GPU,
// "skipped: no CUDA device" elsewhere).
//
// Inputs are drawn on B and copied to the reference (so both see bit-identical floats); parameters are copied from
// the B model into the reference model. Tolerances: relative to max(1, |reference|) per element.
#pragma once
#include <doctest/doctest.h>

#include <biflow/biflow.hpp>
#include <sstream>
#include <string>
#include <vector>

#ifndef BIFLOW_EQ_BACKEND
#error "define BIFLOW_EQ_BACKEND (the backend under test) before including equality_cases.hpp"
#endif
// BIFLOW_EQ_PART = 1..4 compiles one quarter of the cases (the CUDA test binary is built from four translation units
// in parallel: the cases are its longest compile); undefined compiles them all.
#ifndef BIFLOW_EQ_PART
#define BIFLOW_EQ_IN_PART(n) 1
#else
#define BIFLOW_EQ_IN_PART(n) (BIFLOW_EQ_PART == (n))
#endif

namespace eq {
using namespace biflow;
using R = Cpu<double>;
using Bt = BIFLOW_EQ_BACKEND;
using T = typename Bt::scalar;

constexpr double kFwd = 2e-4;   // outputs of a module / layer
constexpr double kGrad = 1e-3;  // gradients (longer sums)

template <class B>
HostMatrix<double> host(const Tensor<B>& t) {
  return to_host(t).template cast<double>();
}
inline double max_rel(const HostMatrix<double>& ref, const HostMatrix<double>& got) {
  REQUIRE(ref.rows() == got.rows());
  REQUIRE(ref.cols() == got.cols());
  double m = 0;
  for (long i = 0; i < ref.size(); ++i)
    m = std::max(m, std::abs(ref.data()[i] - got.data()[i]) / std::max(1.0, std::abs(ref.data()[i])));
  return m;
}
/// CHECKs that `got` (on B) matches `ref` (reference) within tol, naming what was compared.
template <class B>
void same(const char* what, const Tensor<R>& ref, const Tensor<B>& got, double tol = kFwd) {
  const double e = max_rel(host(ref), host(got));
  std::ostringstream msg;
  msg << what << ": max relative difference " << e << " (tolerance " << tol << ")";
  INFO(msg.str());
  CHECK(e <= tol);
}

/// The same tensor on B (drawn there with the counter-based Rng) and on the reference (a copy).
struct Pair {
  Tensor<Bt> b;
  Tensor<R> r;
};
inline Pair randn(long rows, long cols, std::uint64_t seed, double sd = 1.0) {
  Rng rng(seed);
  Pair p{Tensor<Bt>(rows, cols), {}};
  fill_normal(p.b, rng, T(0), T(sd));
  p.r = from_host<R>(host(p.b));
  return p;
}
inline Pair from_labels(const std::vector<int>& labels, long classes) {
  const HostMatrix<double> h = data::one_hot<double>(labels, classes);
  return {from_host<Bt>(h.cast<T>()), from_host<R>(h)};
}

/// Copies every parameter value of m (on B) into ref (same structure on the reference backend).
template <class MB, class MR>
void copy_params(MB& m, MR& ref) {
  std::vector<HostMatrix<double>> v;
  std::vector<std::string> names;
  m.visit_parameters([&](const std::string& n, auto& p) { v.push_back(host(p.value)); names.push_back(n); }, "");
  std::size_t i = 0;
  ref.visit_parameters([&](const std::string& n, auto& p) {
    REQUIRE(i < v.size());
    CHECK(n == names[i]);
    p.value = from_host<R>(v[i++]);
  }, "");
  CHECK(i == v.size());
}
/// Random parameter values (on B) of scale sd, so zero-initialised layers are not trivially equal.
template <class M>
void randomize(M& m, std::uint64_t seed, double sd = 0.3) {
  Rng rng(seed);
  m.visit_parameters([&](const std::string&, auto& p) { fill_normal(p.value, rng, T(0), T(sd)); }, "");
}
template <class MB, class MR>
void same_grads(MB& m, MR& ref, double tol = kGrad) {
  std::vector<Tensor<R>> g;
  ref.visit_parameters([&](const std::string&, auto& p) { g.push_back(p.grad); }, "");
  std::size_t i = 0;
  m.visit_parameters([&](const std::string& n, auto& p) {
    REQUIRE(i < g.size());
    same(("gradient of " + n).c_str(), g[i++], p.grad, tol);
  }, "");
}
template <class MB, class MR>
void same_values(MB& m, MR& ref, double tol) {
  std::vector<Tensor<R>> g;
  ref.visit_parameters([&](const std::string&, auto& p) { g.push_back(p.value); }, "");
  std::size_t i = 0;
  m.visit_parameters([&](const std::string& n, auto& p) {
    REQUIRE(i < g.size());
    same(("value of " + n).c_str(), g[i++], p.value, tol);
  }, "");
}

/// Host copies of a module's parameter values (double), in visiting order.
template <class M>
std::vector<HostMatrix<double>> param_values(M& m) {
  std::vector<HostMatrix<double>> v;
  m.visit_parameters([&](const std::string&, auto& p) { v.push_back(to_host(p.value).template cast<double>()); }, "");
  return v;
}
/// Training moved both copies the same way: the parameter *changes* since `before` agree to `rel` of their norm
/// (entries whose gradient is ~0 up to rounding may step ±lr on either side under Adam, so an entrywise tolerance
/// would have to exceed the steps themselves), and the changes are large (a test whose steps stay inside its
/// tolerance cannot fail).
template <class MB, class MR>
void same_changes(MB& m, MR& ref, const std::vector<HostMatrix<double>>& before_b,
                  const std::vector<HostMatrix<double>>& before_r, double rel) {
  const auto after_b = param_values(m), after_r = param_values(ref);
  REQUIRE(after_b.size() == after_r.size());
  double diff = 0, norm = 0, moved = 0;
  for (std::size_t i = 0; i < after_b.size(); ++i) {
    const HostMatrix<double> db = after_b[i] - before_b[i], dr = after_r[i] - before_r[i];
    diff += (db - dr).squaredNorm();
    norm += dr.squaredNorm();
    moved = std::max(moved, dr.cwiseAbs().maxCoeff());
  }
  INFO("|Δ_backend − Δ_reference| / |Δ_reference| = " << std::sqrt(diff / norm) << ", largest step " << moved);
  CHECK(moved > 1e-2);
  CHECK(std::sqrt(diff) <= rel * std::sqrt(norm));
}

/// make<B>() builds a module; both copies get B's (randomised) parameters. Compares forward, input gradient and
/// parameter gradients.
template <class Make>
void module_case(Make make, long rows, long in, bool random_params = true) {
  auto m = make.template operator()<Bt>();
  auto ref = make.template operator()<R>();
  if (random_params) randomize(m, 5);
  copy_params(m, ref);
  const Pair x = randn(rows, in, 16);
  typename decltype(m)::Context cb;
  typename decltype(ref)::Context cr;
  const auto yb = m.forward(x.b, cb);
  const auto yr = ref.forward(x.r, cr);
  same("forward", yr, yb);
  const Pair dy = randn(yr.rows(), yr.cols(), 17);
  zero_grad(m);
  zero_grad(ref);
  same("backward (input gradient)", ref.backward(cr, dy.r), m.backward(cb, dy.b));
  same_grads(m, ref);
}

/// Same for a flow layer: forward (y, log-det), backward, parameter gradients, inverse, round trip on B.
template <class Make>
void flow_case(Make make, long rows, long d, long cond, bool random_params = true, double grad_tol = kGrad) {
  auto l = make.template operator()<Bt>();
  auto ref = make.template operator()<R>();
  if (random_params) randomize(l, 5);
  copy_params(l, ref);
  const Pair x = randn(rows, d, 6), dy = randn(rows, d, 7), dl = randn(rows, 1, 8);
  const Pair c = cond ? randn(rows, cond, 9) : Pair{};
  typename decltype(l)::Context cb;
  typename decltype(ref)::Context cr;
  const auto ob = l.forward(x.b, cb, c.b);
  const auto orf = ref.forward(x.r, cr, c.r);
  same("forward y", orf.y, ob.y);
  same("forward log-det", orf.logdet, ob.logdet);
  zero_grad(l);
  zero_grad(ref);
  same("backward (input gradient)", ref.backward(cr, dy.r, dl.r), l.backward(cb, dy.b, dl.b), grad_tol);
  same_grads(l, ref, grad_tol);
  if constexpr (FlowLayer<decltype(l)>) {  // forward-only layers (planar, radial, Sylvester) have no inverse
    const auto ib = l.inverse(ob.y, c.b);
    const auto ir = ref.inverse(orf.y, c.r);
    same("inverse x", ir.y, ib.y);
    same("inverse log-det", ir.logdet, ib.logdet);
    same("round trip on the backend under test", x.r, ib.y, 1e-4);
  }
}

inline TarFlowConfig small_tarflow(long classes) {
  TarFlowConfig cfg;
  cfg.image = {1, 4, 4, 2, PatchOrder::channel_major};
  cfg.width = 16;
  cfg.blocks = 2;
  cfg.layers = 1;
  cfg.heads = 2;
  cfg.num_classes = classes;
  cfg.alpha_clamp = 2.0;
  return cfg;
}
inline ReverseConfig small_reverse(bool bottleneck) {
  ReverseConfig rc;
  rc.tokens = 4;
  rc.token_dim = 4;
  rc.width = 8;
  rc.stages = 2;
  rc.heads = 2;
  rc.cond_features = 4;
  rc.guidance = true;
  rc.denoise_stage = true;
  rc.bottleneck = bottleneck;
  return rc;
}
}  // namespace eq

TYPE_TO_STRING(biflow::Cpu<float>);
#if defined(__CUDACC__)
TYPE_TO_STRING(biflow::Cuda<float>);
#endif

#if BIFLOW_EQ_IN_PART(1)
// ---- primitives ----------------------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("equality: gemm matches the reference for every transpose combination, with accumulation", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const long m = 37, k = 19, n = 23;
      const Pair a = randn(ta ? k : m, ta ? m : k, 1), b = randn(tb ? n : k, tb ? k : n, 2);
      Pair c = randn(m, n, 3);
      gemm(a.b, bool(ta), b.b, bool(tb), c.b, T(0.5), T(2));
      gemm(a.r, bool(ta), b.r, bool(tb), c.r, 0.5, 2.0);
      same("gemm with alpha, beta", c.r, c.b);
      same("matmul", matmul(a.r, ta, b.r, tb), matmul(a.b, ta, b.b, tb));
    }
  Tensor<B> out;
  const Pair a = randn(3, 4, 1);
  CHECK_THROWS_AS(gemm(a.b, false, a.b, false, out), shape_error);
  Pair z = randn(5, 0, 1), w = randn(0, 6, 2);
  same("gemm with k = 0 is zero", matmul(z.r, false, w.r, false), matmul(z.b, false, w.b, false));
  // k = 0 with accumulation: C = beta C (cuBLAS alone would leave C untouched), and beta = 0 overwrites NaN.
  for (double beta : {0.0, 1.0, 0.5, -2.0}) {
    Pair c = randn(5, 6, 4);
    gemm(z.b, false, w.b, false, c.b, T(1), T(beta));
    gemm(z.r, false, w.r, false, c.r, 1.0, beta);
    same("gemm with k = 0 scales C by beta", c.r, c.b, 0.0);
  }
  Tensor<B> nan_c = from_host<B>(HostMatrix<T>::Constant(5, 6, std::numeric_limits<T>::quiet_NaN()));
  gemm(z.b, false, w.b, false, nan_c, T(1), T(0));
  CHECK(eq::host(nan_c).cwiseAbs().maxCoeff() == 0.0);
  // The same for the batched product (attention with an empty head dimension) and a column sum over no rows.
  Pair cb = randn(4, 3, 5);
  const MatView vz{0, 2, 0, 1, 0, 0}, wz{0, 0, 3, 3, 0, 0}, vc{0, 2, 3, 3, 6, 0};
  gemm_batched(z.b, vz, false, w.b, wz, false, cb.b, vc, 2, 1, T(1), T(0.5));
  gemm_batched(z.r, vz, false, w.r, wz, false, cb.r, vc, 2, 1, 1.0, 0.5);
  same("gemm_batched with k = 0 scales C by beta", cb.r, cb.b, 0.0);
  Pair none = randn(0, 6, 6), acc = randn(1, 6, 7);
  col_sum(none.b, acc.b, T(0.5));
  col_sum(none.r, acc.r, 0.5);
  same("col_sum over no rows scales the accumulator by beta", acc.r, acc.b, 0.0);
}

TEST_CASE_TEMPLATE("equality: batched strided gemm matches the reference in both loop orders", B, BIFLOW_EQ_BACKEND) {
  using namespace eq;
  // padded: the outer stride is not n_inner × the inner one (like attention's batch × heads), so the matrices do
  // not lie at one uniform stride (the Cuda backend then builds a pointer array for one batched call).
  const Pair a = randn(2 * 3 * 4 + 1, 6, 1), b = randn(2 * 3 * 5 + 1, 7, 2);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (long outer : {1L, 2L})
        for (long pad : {0L, 1L}) {
          const long oa = 3 * 4 * 6 + pad * 6, ob = 3 * 5 * 7 + pad * 7;
          const MatView va = ta ? MatView{1, 4, 3, 6, oa, 4 * 6} : MatView{1, 3, 4, 6, oa, 4 * 6};
          const MatView vb = tb ? MatView{2, 5, 4, 7, ob, 5 * 7} : MatView{2, 4, 5, 7, ob, 5 * 7};
          const MatView vc{0, 3, 5, 5, 3 * 3 * 5, 3 * 5};
          Pair c = randn(18, 5, 3);
          gemm_batched(a.b, va, bool(ta), b.b, vb, bool(tb), c.b, vc, outer, 3, T(0.5), T(2));
          gemm_batched(a.r, va, bool(ta), b.r, vb, bool(tb), c.r, vc, outer, 3, 0.5, 2.0);
          same("gemm_batched", c.r, c.b);
        }
}

TEST_CASE_TEMPLATE("equality: elementwise maps, reductions, slices, gathers and fills match the reference", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  const Pair x = randn(33, 7, 1), y = randn(1, 7, 2), z = randn(33, 1, 3);
  same("zip with row and column broadcast", zip(fn::AddMul{}, x.r, y.r, z.r), zip(fn::AddMul{}, x.b, y.b, z.b), 1e-6);
  same("row_sum", row_sum(x.r), row_sum(x.b), 1e-5);
  Pair s = randn(1, 7, 4);
  col_sum(x.b, s.b, T(1));
  col_sum(x.r, s.r, 1.0);
  same("col_sum accumulating", s.r, s.b, 1e-5);
  CHECK(double(sum(x.b)) == doctest::Approx(sum(x.r)).epsilon(1e-5));
  CHECK(double(sum_sq(x.b)) == doctest::Approx(sum_sq(x.r)).epsilon(1e-5));
  Tensor<B> sq(1, 3, uninit);
  Tensor<R> sqr(1, 3, uninit);
  for (long i = 0; i < 3; ++i) {
    const Pair v = randn(100 * (i + 1), 3 + i, 30 + std::uint64_t(i));
    sum_sq_into(v.b, sq, i);
    sum_sq_into(v.r, sqr, i);
  }
  same("sum_sq_into", sqr, sq, 1e-6);
  CHECK_THROWS_AS(sum_sq_into(x.b, sq, 3), shape_error);
  CHECK(all_finite(x.b));
  HostMatrix<T> bad = HostMatrix<T>::Zero(2, 2);
  bad(1, 1) = std::numeric_limits<T>::quiet_NaN();
  CHECK_FALSE(all_finite(from_host<B>(bad)));
  same("slice_cols", slice_cols(x.r, 2, 3), slice_cols(x.b, 2, 3), 0);
  same("concat_cols", concat_cols(x.r, z.r), concat_cols(x.b, z.b), 0);
  same("slice_rows", slice_rows(x.r, 4, 9), slice_rows(x.b, 4, 9), 0);
  same("concat_rows", concat_rows(x.r, y.r), concat_rows(x.b, y.b), 0);
  const std::vector<std::int32_t> idx{6, 0, 3, 3, 1};
  same("gather_cols", gather_cols(x.r, make_indices<R>(idx)), gather_cols(x.b, make_indices<B>(idx)), 0);
  same("null_rows", null_rows<R>(3, 4), null_rows<B>(3, 4), 0);
  Tensor<B> f(2, 3);
  Tensor<R> fr(2, 3);
  fill(f, T(3.5));
  fill(fr, 3.5);
  same("fill", fr, f, 0);
  set_zero(f);
  same("set_zero", Tensor<R>(2, 3), f, 0);
  Pair g = randn(6, 5, 6);
  const Pair v = randn(2, 5, 7);
  add_repeat_rows(g.b, v.b, 3);
  add_repeat_rows(g.r, v.r, 3);
  same("add_repeat_rows", g.r, g.b, 1e-6);
  same("sum_row_groups", sum_row_groups(g.r, 3), sum_row_groups(g.b, 3), 1e-6);
  Tensor<B> blk(4, 4);
  Tensor<R> blkr(4, 4);
  copy_block(g.b, 1, 5, blk, 4, 4, 3, 2);
  copy_block(g.r, 1, 5, blkr, 4, 4, 3, 2);
  same("copy_block", blkr, blk, 1e-6);  // g differs by float rounding (add_repeat_rows above)
  CHECK_THROWS_AS(copy_block(g.b, 0, 5, blk, 0, 4, 5, 4), shape_error);
  Pair sq4 = randn(4, 4, 10);
  same("inverse", inverse(sq4.r), inverse(sq4.b), 1e-4);
}

TEST_CASE_TEMPLATE("equality: softmax (causal and full) and LayerNorm primitives match the reference", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  for (bool causal : {true, false}) {
    CAPTURE(causal);
    Pair s = randn(12, 4, 4), d = randn(12, 4, 5);
    softmax_rows(s.b, causal);
    softmax_rows(s.r, causal);
    same("softmax_rows", s.r, s.b, 1e-6);
    softmax_rows_backward(s.b, d.b);
    softmax_rows_backward(s.r, d.r);
    same("softmax_rows_backward", d.r, d.b, 1e-5);
  }
  const Pair x = randn(9, 40, 1), g = randn(1, 40, 2), b = randn(1, 40, 3), dy = randn(9, 40, 4);
  Tensor<B> y, mean, rstd, dg(1, 40), db(1, 40);
  Tensor<R> yr, meanr, rstdr, dgr(1, 40), dbr(1, 40);
  layernorm_forward(x.b, g.b, b.b, T(1e-5), y, mean, rstd);
  layernorm_forward(x.r, g.r, b.r, 1e-5, yr, meanr, rstdr);
  same("layernorm_forward", yr, y);
  same("layernorm dx", layernorm_backward(x.r, g.r, meanr, rstdr, dy.r, dgr, dbr),
       layernorm_backward(x.b, g.b, mean, rstd, dy.b, dg, db), kGrad);
  same("layernorm dgamma", dgr, dg, kGrad);
  same("layernorm dbeta", dbr, db, kGrad);
}

TEST_CASE_TEMPLATE("equality: the counter-based RNG draws the same numbers as Cpu<float> from the same seed", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  Rng r1(9), r2(9);
  Tensor<B> u(100, 3);
  Tensor<Cpu<float>> uc(100, 3);
  fill_uniform(u, r1, T(-1), T(2));
  fill_uniform(uc, r2, -1.0f, 2.0f);
  same("fill_uniform (bit-identical: one explicit FMA on both backends)", from_host<R>(host(uc)), u, 0.0);
  Tensor<B> n(50, 7);
  Tensor<Cpu<float>> nc(50, 7);
  fill_normal(n, r1, T(0.5), T(2));
  fill_normal(nc, r2, 0.5f, 2.0f);
  same("fill_normal", from_host<R>(host(nc)), n, 1e-6);
  CHECK(r1.counter() == r2.counter());
}

// ---- nn modules ----------------------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("equality: nn modules match the reference (Linear, MaskedLinear, activations, MLP, LayerNorm, "
                   "Embedding)", B, BIFLOW_EQ_BACKEND) {
  using namespace eq;
  module_case([]<class X>() { Rng r(1); return Linear<X>(5, 4, r); }, 9, 5);
  module_case([]<class X>() { Rng r(1); return Linear<X>(5, 4, r, false); }, 9, 5);
  module_case([]<class X>() { return Activation<X, act::ReLU>(6); }, 9, 6);
  module_case([]<class X>() { return Activation<X, act::GELU>(6); }, 9, 6);
  module_case([]<class X>() { return Activation<X, act::SiLU>(6); }, 9, 6);
  module_case([]<class X>() { return Activation<X, act::Tanh>(6); }, 9, 6);
  module_case([]<class X>() { Rng r(2); return MLP<X, act::GELU>({5, 16, 3}, r); }, 9, 5);
  module_case([]<class X>() { Rng r(3); return MLP<X, act::SiLU>({5, 8, 8, 3}, r); }, 9, 5);
  module_case([]<class X>() { Rng r(4); return MLP<X, act::ReLU>({5, 8, 3}, r); }, 9, 5);
  module_case([]<class X>() { return LayerNorm<X>(6); }, 9, 6);
  module_case([]<class X>() { Rng r(5); return Embedding<X>(4, 8, r); }, 9, 4);
  module_case([]<class X>() {
    Rng r(5);
    MaskedLinear<X> m(4, 3, r);
    HostMatrix<typename X::scalar> mask = HostMatrix<typename X::scalar>::Ones(3, 4);
    mask(0, 1) = 0;
    m.set_mask(from_host<X>(mask));
    return m;
  }, 9, 4);
}

TEST_CASE_TEMPLATE("equality: attention and transformer layers match the reference, KV-cached steps included", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  module_case([]<class X>() { Rng r(1); return Attention<X>(8, 2, 3, true, r); }, 9, 8);
  module_case([]<class X>() { Rng r(2); return Attention<X>(8, 4, 3, false, r); }, 9, 8);
  module_case([]<class X>() { Rng r(3); return TransformerLayer<X>(8, 2, 3, true, r); }, 9, 8);
  module_case([]<class X>() { Rng r(4); return TransformerLayer<X>(8, 2, 3, false, r); }, 9, 8);
  Rng r1(6), r2(6);
  TransformerLayer<B> l(8, 2, 4, true, r1);
  TransformerLayer<R> lr(8, 2, 4, true, r2);
  randomize(l, 7);
  copy_params(l, lr);
  KVCache<B> kb;
  KVCache<R> kr;
  for (int t = 0; t < 4; ++t) {
    const Pair x = randn(3, 8, 10 + std::uint64_t(t));
    same("TransformerLayer.step", lr.step(x.r, kr), l.step(x.b, kb));
  }
}

#endif
#if BIFLOW_EQ_IN_PART(2)
// ---- flow layers ---------------------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("equality: flow layers match the reference (coupling, MAF, permutations, patchify, LU, ActNorm, "
                   "compositions)", B, BIFLOW_EQ_BACKEND) {
  using namespace eq;
  flow_case([]<class X>() { Rng r(1); return make_coupling<X>(masks::half(6, 1), {16, 16}, r); }, 17, 6, 0);
  flow_case([]<class X>() { Rng r(2); return make_coupling<X>(masks::alternating(6, 0), {16}, r, 3); }, 17, 6, 3);
  flow_case([]<class X>() { Rng r(3); return MaskedAutoregressive<X>(6, {24, 24}, r); }, 17, 6, 0);
  flow_case([]<class X>() { Rng r(4); return MaskedAutoregressive<X>(6, {24}, r, 2); }, 17, 6, 2);
  flow_case([]<class X>() { Rng r(5); return Permutation<X>::random(6, r); }, 17, 6, 0);
  flow_case([]<class X>() { return make_patchify<X>({2, 4, 4, 2, PatchOrder::channel_major}); }, 5, 32, 0);
  flow_case([]<class X>() { Rng r(6); return LULinear<X>(6, r); }, 17, 6, 0);
  flow_case([]<class X>() { return ActNorm<X>(6); }, 17, 6, 0);
  flow_case([]<class X>() {
    Rng r(7);
    using L = Sequential<MaskedAutoregressive<X>, Permutation<X>>;
    return Repeat<2, L>([&](std::size_t) { return L(MaskedAutoregressive<X>(6, {16}, r, 2), Permutation<X>::reverse(6)); });
  }, 17, 6, 2);
  // ActNorm's data-dependent initialisation
  const Pair x = randn(40, 5, 3, 2.0);
  ActNorm<B> a(5);
  ActNorm<R> ar(5);
  a.data_init(x.b);
  ar.data_init(x.r);
  same("ActNorm.data_init loc", ar.loc.value, a.loc.value, 1e-5);
  same("ActNorm.data_init log_scale", ar.log_scale.value, a.log_scale.value, 1e-5);
}

TEST_CASE_TEMPLATE("equality: variational-inference flow layers match the reference (planar, radial, Householder, "
                   "Sylvester both kinds, residual, forward-only compositions)", B, BIFLOW_EQ_BACKEND) {
  using namespace eq;
  flow_case([]<class X>() { Rng r(1); return Planar<X>(5, r); }, 17, 5, 0);
  flow_case([]<class X>() { Rng r(2); return Radial<X>(5, r); }, 17, 5, 0);
  flow_case([]<class X>() { Rng r(3); return Householder<X>(5, 4, r); }, 17, 5, 0);
  flow_case([]<class X>() { Rng r(4); return Sylvester<X>(5, 3, 4, r); }, 17, 5, 0);
  flow_case([]<class X>() { Rng r(5); return Sylvester<X, sylvester::Triangular>(5, true, r); }, 17, 5, 0);
  // Residual: the constructor's random weights (randomising them would leave the power iteration behind). Its weight
  // gradient subtracts the spectral norm's rank-1 correction from the direct term, which loses digits in float:
  // tolerance 3e-3 (measured 1.4e-3 on Cpu<float>).
  flow_case([]<class X>() { Rng r(7); residual::Options o; o.hidden = {8}; return Residual<X>(4, r, o); }, 17, 4, 0, false,
            3e-3);
  flow_case([]<class X>() {
    Rng r(6);
    return Repeat<dynamic, Sequential<Planar<X>, Radial<X>>>(3, [&](std::size_t) {
      return Sequential<Planar<X>, Radial<X>>(Planar<X>(4, r), Radial<X>(4, r));
    });
  }, 17, 4, 0);
}

TEST_CASE_TEMPLATE("equality: TarBlock and TarFlow match the reference: forward, backward, cached decoding, guidance, "
                   "score denoising, likelihood", B, BIFLOW_EQ_BACKEND) {
  using namespace eq;
  flow_case([]<class X>() {
    Rng r(1);
    return TarBlock<X>({4, 2, 8, 2, 2, 3, 2.0, 2.0}, TarBlock<X>::reversed_order(4), r);
  }, 5, 8, 3);
  flow_case([]<class X>() { Rng r(2); return TarFlow<X>(small_tarflow(3), r); }, 5, 16, 4, true);
  auto make = []<class X>() { Rng r(2); return TarFlow<X>(small_tarflow(3), r); };
  auto m = make.template operator()<B>();
  auto mr = make.template operator()<R>();
  randomize(m, 3, 0.1);
  copy_params(m, mr);
  const Pair cond = from_labels({0, 1, 2, 3, 3}, 4);
  const Pair z = randn(5, 16, 4);
  for (double w : {0.0, 2.0}) {
    CAPTURE(w);
    same("TarFlow.inverse (KV cache, guidance)", mr.inverse(z.r, cond.r, Guidance<R>{w, true, {}}).y,
         m.inverse(z.b, cond.b, Guidance<B>{w, true, {}}).y, 1e-3);
  }
  const auto xb = m.inverse(z.b, cond.b).y;
  const auto xr = mr.inverse(z.r, cond.r).y;
  same("inverse_uncached equals the cached decode", xr, m.inverse_uncached(z.b, cond.b).y, 1e-3);
  same("score", score(mr, xr, cond.r), score(m, xb, cond.b), 1e-3);
  same("denoise (Tweedie step)", denoise(mr, xr, 0.1, cond.r), denoise(m, xb, 0.1, cond.b), 1e-3);
  same("log_prob", log_prob(mr, xr, cond.r), log_prob(m, xb, cond.b), 1e-3);
  CHECK(nll(m, xb, cond.b) == doctest::Approx(nll(mr, xr, cond.r)).epsilon(1e-4));
}

#endif
#if BIFLOW_EQ_IN_PART(3)
// ---- learned reverse model -----------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("equality: reverse stages and ReverseModel match the reference (with and without bottleneck)", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  module_case([]<class X>() { Rng r(1); return TransformerStage<X>({4, 8, 2, 2, 2.0}, r); }, 8, 8);
  module_case([]<class X>() { Rng r(3); return MlpStage<X>({1, 8, 2, 2, 2.0}, r); }, 5, 8);
  for (bool bottleneck : {false, true}) {
    CAPTURE(bottleneck);
    const ReverseConfig rc = small_reverse(bottleneck);
    Rng r1(5), r2(5);
    ReverseModel<B> g(rc, r1);
    ReverseModel<R> gr(rc, r2);
    randomize(g, 6);
    copy_params(g, gr);
    const Pair cond = from_labels({0, 1, 2, 3, 3}, 4);
    const Pair w = randn(5, 1, 4), z = randn(5, 16, 7);
    typename ReverseModel<B>::Context cb;
    typename ReverseModel<R>::Context cr;
    same("ReverseModel.forward", gr.forward(z.r, cond.r, w.r, cr), g.forward(z.b, cond.b, w.b, cb));
    REQUIRE(cb.hidden.size() == cr.hidden.size());
    for (std::size_t j = 0; j < cb.hidden.size(); ++j) same("hidden state", cr.hidden[j], cb.hidden[j]);
    zero_grad(g);
    zero_grad(gr);
    const Pair dh = randn(cb.hidden[0].rows(), cb.hidden[0].cols(), 8), dout = randn(5, 16, 9);
    same("ReverseModel.backward", gr.backward(cr, dout.r, {dh.r}), g.backward(cb, dout.b, {dh.b}));
    same_grads(g, gr);
    same("generate_guided", gr.generate_guided(z.r, cond.r, 1.5), g.generate_guided(z.b, cond.b, 1.5));
  }
}

TEST_CASE_TEMPLATE("equality: distances (MSE, L1, Huber, cosine, sums, adaptive, feature) match the reference", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  const Pair a = randn(6, 5, 11), b = randn(6, 5, 12), w = randn(6, 1, 13);
  auto check = [&](const auto& d) {
    CAPTURE(d.name());
    same("per_row", d.per_row(a.r, b.r), d.per_row(a.b, b.b));
    same("grad", d.grad(a.r, b.r, w.r), d.grad(a.b, b.b, w.b));
    Tensor<B> g;
    Tensor<R> gr;
    const double l = distance_loss(d, a.b, b.b, 0.7, g), lr = distance_loss(d, a.r, b.r, 0.7, gr);
    CHECK(l == doctest::Approx(lr).epsilon(1e-5));
    same("distance_loss gradient", gr, g);
  };
  check(Mse{});
  check(L1{});
  check(Huber{0.5});
  check(Cosine{});
  check(Sum<Mse, Cosine>{});
  check(Adaptive<Sum<Mse, Cosine>>{{}, 0.5, 0.1});
  Rng f1(14), f2(14);
  MlpFeatures<B> net({5, 7, 6}, f1);
  MlpFeatures<R> netr({5, 7, 6}, f2);
  copy_params(net, netr);
  same("Feature<MlpFeatures, Mse>.per_row", Feature<MlpFeatures<R>, Mse>{&netr}.per_row(a.r, b.r),
       Feature<MlpFeatures<B>, Mse>{&net}.per_row(a.b, b.b));
  same("Feature<MlpFeatures, Mse>.grad", Feature<MlpFeatures<R>, Mse>{&netr}.grad(a.r, b.r, w.r),
       Feature<MlpFeatures<B>, Mse>{&net}.grad(a.b, b.b, w.b));
}

TEST_CASE_TEMPLATE("equality: hidden-state strategies (distillation, alignment heads) match the reference", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  const ReverseConfig rc = small_reverse(true);  // bottleneck: hidden states in input space (both strategies apply)
  const Pair h0 = randn(5 * 4, 4, 1), t0 = randn(5, 16, 2), h1 = randn(5 * 4, 4, 3), t1 = randn(5, 16, 4);
  const std::vector<Tensor<B>> hb{h0.b, h1.b}, tb{t0.b, t1.b};
  const std::vector<Tensor<R>> hr{h0.r, h1.r}, tr{t0.r, t1.r};
  std::vector<Tensor<B>> db;
  std::vector<Tensor<R>> dr;
  HiddenDistillation hd;
  CHECK(hd.hidden_loss(rc, hb, tb, Mse{}, {1.0, 0.5}, db) ==
        doctest::Approx(hd.hidden_loss(rc, hr, tr, Mse{}, {1.0, 0.5}, dr)).epsilon(1e-5));
  for (std::size_t j = 0; j < db.size(); ++j) same("HiddenDistillation gradient", dr[j], db[j]);
  ReverseConfig ra = small_reverse(false);
  Rng r1(5), r2(5);
  HiddenAlignment<B> ha(ra, r1);
  HiddenAlignment<R> har(ra, r2);
  randomize(ha, 6);
  copy_params(ha, har);
  const Pair g0 = randn(5 * 4, 8, 5), g1 = randn(5 * 4, 8, 6);
  zero_grad(ha);
  zero_grad(har);
  const double lb = ha.hidden_loss(ra, std::vector<Tensor<B>>{g0.b, g1.b}, tb, Cosine{}, {}, db);
  const double lr = har.hidden_loss(ra, std::vector<Tensor<R>>{g0.r, g1.r}, tr, Cosine{}, {}, dr);
  CHECK(lb == doctest::Approx(lr).epsilon(1e-5));
  for (std::size_t j = 0; j < db.size(); ++j) same("HiddenAlignment gradient", dr[j], db[j]);
  same_grads(ha, har);
}

// ---- optimisation --------------------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("equality: AdamW steps, EMA, gradient clipping and cross-entropy match the reference", B,
                   BIFLOW_EQ_BACKEND) {
  using namespace eq;
  auto make = []<class X>() { Rng r(1); return MLP<X, act::GELU>({5, 16, 3}, r); };
  auto m = make.template operator()<B>();
  auto mr = make.template operator()<R>();
  copy_params(m, mr);
  AdamW<B> opt({0.9, 0.99, 1e-8, 0.01});
  AdamW<R> optr({0.9, 0.99, 1e-8, 0.01});
  Ema<B> ema(0.9, true);
  Ema<R> emar(0.9, true);
  for (int s = 0; s < 4; ++s) {
    // Gradients well away from 0 (Adam divides by √v: a gradient of ~0 ± rounding may step ±lr either way).
    Rng gb(40 + std::uint64_t(s));
    m.visit_parameters([&](const std::string&, auto& p) { fill_uniform(p.grad, gb, T(0.5), T(1.5)); }, "");
    std::vector<HostMatrix<double>> g;
    m.visit_parameters([&](const std::string&, auto& p) { g.push_back(host(p.grad)); }, "");
    std::size_t i = 0;
    mr.visit_parameters([&](const std::string&, auto& p) { p.grad = from_host<R>(g[i++]); }, "");
    CHECK(grad_norm(m) == doctest::Approx(grad_norm(mr)).epsilon(1e-5));
    CHECK(clip_grad_norm(m, 2.0) == doctest::Approx(clip_grad_norm(mr, 2.0)).epsilon(1e-5));
    same_grads(m, mr, 1e-5);
    opt.step(m, 1e-2);
    optr.step(mr, 1e-2);
    ema.update(m);
    emar.update(mr);
  }
  same_values(m, mr, 1e-5);
  for (std::size_t i = 0; i < opt.first_moments().size(); ++i) {
    same("AdamW first moment", optr.first_moments()[i], opt.first_moments()[i], 1e-5);
    same("AdamW second moment", optr.second_moments()[i], opt.second_moments()[i], 1e-5);
    same("EMA shadow", emar.shadow()[i], ema.shadow()[i], 1e-5);
  }
  const Pair logits = randn(7, 3, 20), targets = from_labels({0, 1, 2, 0, 1, 2, 2}, 3);
  Tensor<B> d;
  Tensor<R> dr;
  CHECK(softmax_cross_entropy(logits.b, targets.b, d) ==
        doctest::Approx(softmax_cross_entropy(logits.r, targets.r, dr)).epsilon(1e-5));
  same("softmax cross-entropy gradient", dr, d, 1e-5);
  // a classifier training step (cross-entropy + AdamW), as used to evaluate samples
  Rng c1(21), c2(21);
  MlpClassifier<B> cls({16, 12, 8, 3}, c1);
  MlpClassifier<R> clsr({16, 12, 8, 3}, c2);
  copy_params(cls, clsr);
  TrainOptions copt;
  copt.warmup = 0;
  Optimization<B> co(copt);
  Optimization<R> cor(copt);
  const Pair xs = randn(7, 16, 22);
  for (int s = 0; s < 3; ++s)
    CHECK(cls.train_step(xs.b, targets.b, co) == doctest::Approx(clsr.train_step(xs.r, targets.r, cor)).epsilon(1e-4));
  CHECK(cls.predict(xs.b) == clsr.predict(xs.r));
}

#endif
#if BIFLOW_EQ_IN_PART(4)
// ---- full training steps -------------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("equality: maximum-likelihood training steps match the reference (RealNVP; class-conditional "
                   "TarFlow with noise augmentation)", B, BIFLOW_EQ_BACKEND) {
  using namespace eq;
  TrainOptions o;
  o.ema_decay = 0.9;
  o.verbose = false;
  o.lr = 1e-2;  // large steps from the first one: the parameters must move well beyond the tolerance
  o.warmup = 0;
  {
    auto make = []<class X>() {
      Rng r(11);
      return Repeat<4, AffineCoupling<X>>([&](std::size_t i) { return make_coupling<X>(masks::half(2, int(i % 2)), {32, 32}, r); });
    };
    auto f = make.template operator()<B>();
    auto fr = make.template operator()<R>();
    copy_params(f, fr);
    const auto b0 = param_values(f), r0 = param_values(fr);
    MleTrainer<decltype(f)> t(f, o);
    MleTrainer<decltype(fr)> tr(fr, o);
    Rng data(12);
    for (int s = 0; s < 5; ++s) {
      const HostMatrix<double> x = data::toy("moons", 128, data);
      const StepResult rb = t.step(from_host<B>(x.cast<T>())), rr = tr.step(from_host<R>(x.cast<T>().template cast<double>()));
      CHECK(rb.loss == doctest::Approx(rr.loss).epsilon(1e-4));
      CHECK(rb.grad_norm == doctest::Approx(rr.grad_norm).epsilon(1e-3));
    }
    same_changes(f, fr, b0, r0, 2e-2);
  }
  {
    auto make = []<class X>() { Rng r(2); return TarFlow<X>(small_tarflow(3), r); };
    auto f = make.template operator()<B>();
    auto fr = make.template operator()<R>();
    randomize(f, 3, 0.1);
    copy_params(f, fr);
    const auto b0 = param_values(f), r0 = param_values(fr);
    MleTrainer<decltype(f)> t(f, o);
    MleTrainer<decltype(fr)> tr(fr, o);
    const Pair cond = from_labels({0, 1, 2, 3, 0, 1}, 4);
    for (int s = 0; s < 3; ++s) {
      Pair x = randn(6, 16, 50 + std::uint64_t(s));
      const Pair e = randn(6, 16, 60 + std::uint64_t(s), 0.05);  // noise augmentation x + σε
      add_inplace(x.b, e.b);
      x.r = from_host<R>(host(x.b));
      const StepResult rb = t.step(x.b, cond.b), rr = tr.step(x.r, cond.r);
      CHECK(rb.loss == doctest::Approx(rr.loss).epsilon(1e-4));
      CHECK(rb.grad_norm == doctest::Approx(rr.grad_norm).epsilon(1e-3));
    }
    same_changes(f, fr, b0, r0, 2e-2);
  }
}

namespace eq {
template <class S, class SR>
void reverse_training_case(S& sb, SR& sr, bool bottleneck) {
  auto make_flow = []<class X>() { Rng r(2); return TarFlow<X>(small_tarflow(3), r); };
  auto f = make_flow.template operator()<Bt>();
  auto fr = make_flow.template operator()<R>();
  randomize(f, 3, 0.1);
  copy_params(f, fr);
  const ReverseConfig rc = small_reverse(bottleneck);
  Rng r1(5), r2(5);
  ReverseModel<Bt> g(rc, r1);
  ReverseModel<R> gr(rc, r2);
  copy_params(g, gr);
  copy_params(sb, sr);
  ReverseTrainOptions o;
  o.noise = 0.05;
  o.guidance_max = 2.0;
  o.optim.ema_decay = 0.9;
  o.optim.verbose = false;
  o.optim.lr = 1e-2;  // no warm-up, large steps: G must move well beyond the tolerance
  o.optim.warmup = 0;
  const auto b0 = param_values(g), r0 = param_values(gr);
  ReverseTrainer<TarFlow<Bt>, ReverseModel<Bt>, S> t(f, g, sb, o);
  ReverseTrainer<TarFlow<R>, ReverseModel<R>, SR> tr(fr, gr, sr, o);
  const Pair cond = from_labels({0, 1, 2, 3, 0, 1}, 4);
  Rng s1(9), s2(9);
  for (int i = 0; i < 3; ++i) {
    const Pair x = randn(6, 16, 20 + std::uint64_t(i));
    const auto rb = t.step(x.b, cond.b, s1);
    const auto rr = tr.step(x.r, cond.r, s2);
    CHECK(rb.loss == doctest::Approx(rr.loss).epsilon(1e-3));
    CHECK(rb.output_loss == doctest::Approx(rr.output_loss).epsilon(1e-3));
    CHECK(rb.hidden_loss == doctest::Approx(rr.hidden_loss).epsilon(1e-3));
  }
  same_changes(g, gr, b0, r0, 2e-2);
}
}  // namespace eq

TEST_CASE_TEMPLATE("equality: BiFlow reverse training steps match the reference for every strategy (learned "
                   "denoising, training-time CFG)", B, BIFLOW_EQ_BACKEND) {
  using namespace eq;
  SUBCASE("naive distillation") {
    NaiveDistillation s, sr;
    reverse_training_case(s, sr, false);
  }
  SUBCASE("hidden distillation") {
    HiddenDistillation s, sr;
    reverse_training_case(s, sr, true);
  }
  SUBCASE("hidden alignment") {
    Rng r1(7), r2(7);
    HiddenAlignment<B> s(small_reverse(false), r1);
    HiddenAlignment<R> sr(small_reverse(false), r2);
    randomize(s, 8);
    reverse_training_case(s, sr, false);
  }
}
#endif
