// Training (train/adamw.hpp, schedule.hpp, clip.hpp, ema.hpp, nll.hpp, optimization.hpp, trainer.hpp,
// flat_parameters.hpp) and densities
// (flow/distribution.hpp): optimiser, schedule, clipping, EMA, NaN guard, reproducibility, a trained density.
#include <cmath>

#include "helpers.hpp"

using namespace tests;
using D = biflow::Cpu<double>;
using F = biflow::Cpu<float>;

TEST_CASE("AdamW's first step equals the closed form (lr·sign(g) after bias correction, plus decoupled decay)") {
  Rng rng(1);
  Linear<D> lin(2, 1, rng);
  const auto w0 = to_host(lin.weight.value);
  HostMatrix<double> g(1, 2);
  g << 0.5, -2.0;
  lin.weight.grad = from_host<D>(g);
  set_zero(lin.bias.grad);
  AdamW<D> opt({0.9, 0.999, 1e-8, 0.1});
  opt.step(lin, 0.01);
  const auto w1 = to_host(lin.weight.value);
  for (int j = 0; j < 2; ++j) {
    const double decayed = w0(0, j) * (1 - 0.01 * 0.1);
    const double expect = decayed - 0.01 * g(0, j) / (std::abs(g(0, j)) + 1e-8);
    CHECK(w1(0, j) == doctest::Approx(expect).epsilon(1e-12));
  }
}

TEST_CASE("AdamW leaves a frozen parameter alone (no step, no weight decay) and updates the others") {
  Rng rng(2);
  Linear<D> lin(2, 1, rng);
  const auto w0 = to_host(lin.weight.value), b0 = to_host(lin.bias.value);
  lin.weight.grad = constant<D>(1, 2, 0.5);
  lin.bias.grad = constant<D>(1, 1, 0.5);
  lin.weight.frozen = true;
  AdamW<D> opt({0.9, 0.999, 1e-8, 0.1});
  opt.step(lin, 0.01);
  CHECK((to_host(lin.weight.value) - w0).cwiseAbs().maxCoeff() == 0.0);
  CHECK((to_host(lin.bias.value) - b0).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("the shared optimiser step (optimization.hpp): a non-finite loss is skipped and counted, the linear "
          "schedule decays in a straight line, and the EMA follows the model given as averaged") {
  Rng rng(3);
  Linear<D> lin(2, 1, rng);
  TrainOptions o;
  o.lr = 1e-2;
  o.warmup = 0;
  o.total_steps = 4;
  o.linear_decay = true;
  o.ema_decay = 0.9;
  o.verbose = false;
  Optimization<D> opt(o);
  const auto w0 = to_host(lin.weight.value);
  lin.weight.grad = constant<D>(1, 2, 1.0);
  const StepResult bad = opt.step(lin, std::nan(""));
  CHECK(bad.skipped);
  CHECK(opt.skipped_steps() == 1);
  CHECK((to_host(lin.weight.value) - w0).cwiseAbs().maxCoeff() == 0.0);  // nothing moved
  CHECK(to_host(lin.weight.grad).cwiseAbs().maxCoeff() == 0.0);          // and the gradients were cleared
  lin.weight.grad = constant<D>(1, 2, 1.0);
  const StepResult good = opt.step(lin, 1.0);
  CHECK_FALSE(good.skipped);
  CHECK(good.lr == doctest::Approx(1e-2 * (1.0 - 1.0 / 4.0)));  // step 1 of 4, straight line
  CHECK(opt.counters().step == 2);
  CHECK(opt.counters().consecutive_bad == 0);
  CHECK(opt.has_ema());
  CHECK((to_host(lin.weight.value) - w0).cwiseAbs().maxCoeff() > 1e-3);
}

namespace {
/// Deterministic gradients for every parameter (seeded per step and parameter), the same on any copy of a model.
template <class M>
void set_grads(M& m, int step) {
  std::uint64_t k = 0;
  m.visit_parameters([&](const std::string&, auto& p) {
    Rng r(1000 * std::uint64_t(step) + k++);
    fill_normal(p.grad, r, 0.0f, 0.5f);
  }, "");
}
template <class M>
std::vector<HostMatrix<float>> values_of(M& m) {
  std::vector<HostMatrix<float>> v;
  m.visit_parameters([&](const std::string&, auto& p) { v.push_back(to_host(p.value)); }, "");
  return v;
}
}  // namespace

TEST_CASE("flat parameters: every parameter and gradient becomes a view of one buffer; names, shapes and values "
          "are unchanged, assignment writes through, copies own their data") {
  Rng rng(3);
  MLP<F> net({5, 16, 16, 3}, rng);
  std::vector<std::string> names;
  net.visit_parameters([&](const std::string& n, auto&) { names.push_back(n); }, "");
  const auto before = values_of(net);
  FlatParameters<F> flat(net);
  CHECK(flat.bound_to(net));
  CHECK(flat.size() == parameter_count(net));
  std::size_t i = 0;
  long offset = 0;
  net.visit_parameters([&](const std::string& n, Parameter<F>& p) {
    CHECK(n == names[i]);
    CHECK(flat.entries()[i].name == n);
    CHECK(p.value.is_view());
    CHECK(p.grad.is_view());
    CHECK(p.value.data() == flat.values().data() + offset);
    CHECK(p.grad.data() == flat.grads().data() + offset);
    CHECK(to_host(p.value) == before[i]);
    offset += p.value.size();
    ++i;
  }, "");
  // Writing a parameter writes the flat buffer; a wrong shape is refused, naming both shapes.
  Parameter<F>& w = net.linear(0).weight;
  const HostMatrix<float> ones = HostMatrix<float>::Ones(w.value.rows(), w.value.cols());
  w.value = from_host<F>(ones);
  CHECK(w.value.is_view());
  CHECK(flat.values().data()[0] == 1.0f);
  CHECK_THROWS_WITH_AS(w.value = Tensor<F>(2, 2), doctest::Contains("expected a 16x5 tensor"), shape_error);
  // std::swap exchanges contents and the view stays bound (what Ema::swap relies on).
  Tensor<F> other(w.value.rows(), w.value.cols());
  std::swap(w.value, other);
  CHECK(w.value.is_view());
  CHECK(flat.values().data()[0] == 0.0f);
  CHECK(to_host(other) == ones);
  // A copy of the model is independent: owning tensors, not views.
  MLP<F> copy = net;
  copy.visit_parameters([&](const std::string&, Parameter<F>& p) { CHECK(!p.value.is_view()); }, "");
  fill(copy.linear(0).weight.value, 7.0f);
  CHECK(flat.values().data()[0] == 0.0f);
  CHECK(flat.bound_to(net));
  CHECK(!flat.bound_to(copy));
}

TEST_CASE("flat parameters: the fused optimiser step (AdamW, clipping, EMA over the flat buffers) equals the "
          "per-tensor one, with a frozen parameter in the middle, and after a restored optimiser state") {
  for (double clip : {0.0, 0.5}) {
    CAPTURE(clip);
    Rng rng(4);
    MLP<F> a({6, 32, 32, 4}, rng);
    MLP<F> b = a;  // the per-tensor twin
    a.linear(1).bias.frozen = b.linear(1).bias.frozen = true;
    TrainOptions o;
    o.lr = 1e-2;
    o.warmup = 2;
    o.total_steps = 20;
    o.weight_decay = 0.1;
    o.clip = clip;
    o.ema_decay = 0.9;
    o.verbose = false;
    Optimization<F> fused(o);
    AdamW<F> opt({o.beta1, o.beta2, o.eps, o.weight_decay});
    Ema<F> ema(o.ema_decay, o.ema_warmup);
    CosineSchedule sched{o.lr, o.warmup, o.total_steps, o.min_lr_fraction, o.linear_decay};
    for (int s = 0; s < 6; ++s) {
      set_grads(a, s);
      set_grads(b, s);
      const StepResult r = fused.step(a, 1.0);
      const double n = clip_grad_norm(b, o.clip);
      opt.step(b, sched(s));
      ema.update(b);
      CHECK(r.grad_norm == doctest::Approx(n).epsilon(1e-6));
    }
    REQUIRE(fused.flat() != nullptr);
    CHECK(fused.flat()->bound_to(a));
    const auto va = values_of(a), vb = values_of(b);
    const double tol = clip > 0 ? 1e-6 : 0.0;  // clipping: the norm is summed in another order
    for (std::size_t i = 0; i < va.size(); ++i)
      CHECK((va[i] - vb[i]).cwiseAbs().maxCoeff() <= tol * (1 + vb[i].cwiseAbs().maxCoeff()));
    CHECK(to_host(a.linear(1).bias.value) == to_host(b.linear(1).bias.value));  // frozen: untouched on both
    for (std::size_t i = 0; i < ema.shadow().size(); ++i)
      CHECK((to_host(fused.ema().shadow()[i]) - to_host(ema.shadow()[i])).cwiseAbs().maxCoeff() <= tol + 0.0);
    // The moments are per-parameter views of the flat state (checkpoints read them by name).
    CHECK(fused.optimizer().first_moments().size() == va.size());
    CHECK(fused.optimizer().first_moments()[0].is_view());
    // A restored per-tensor state (a checkpoint) is adopted by the next fused step.
    Optimization<F> resumed(o);
    MLP<F> c = b;
    resumed.optimizer().set_state(opt.steps(), opt.first_moments(), opt.second_moments(), opt.names());
    resumed.ema().set_state(ema.updates(), ema.shadow());
    resumed.set_counters({6, 0, 0});
    set_grads(b, 6);
    set_grads(c, 6);
    resumed.step(c, 1.0);
    clip_grad_norm(b, o.clip);
    opt.step(b, sched(6));
    ema.update(b);
    const auto vc = values_of(c), vb2 = values_of(b);
    for (std::size_t i = 0; i < vc.size(); ++i)
      CHECK((vc[i] - vb2[i]).cwiseAbs().maxCoeff() <= tol * (1 + vb2[i].cwiseAbs().maxCoeff()));
    CHECK(resumed.optimizer().first_moments()[0].is_view());
  }
}

TEST_CASE("cosine schedule warms up linearly, peaks at base_lr and decays to the floor") {
  CosineSchedule s{1.0, 10, 110, 0.1};
  CHECK(s(0) == doctest::Approx(0.1));
  CHECK(s(9) == doctest::Approx(1.0));
  CHECK(s(10) == doctest::Approx(1.0));
  CHECK(s(60) == doctest::Approx(0.55));
  CHECK(s(110) == doctest::Approx(0.1));
  CHECK(s(500) == doctest::Approx(0.1));
}

TEST_CASE("gradient clipping rescales to the max norm and reports the norm before") {
  Rng rng(2);
  Linear<D> lin(3, 2, rng);
  fill(lin.weight.grad, 3.0);
  fill(lin.bias.grad, 4.0);
  const double before = std::sqrt(6 * 9.0 + 2 * 16.0);
  CHECK(clip_grad_norm(lin, 1.0) == doctest::Approx(before));
  CHECK(grad_norm(lin) == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(clip_grad_norm(lin, 10.0) == doctest::Approx(1.0).epsilon(1e-5));  // below the max: untouched
}

TEST_CASE("EMA tracks decay·shadow + (1-decay)·param and swap exchanges both ways") {
  Rng rng(3);
  Linear<D> lin(1, 1, rng, false);
  fill(lin.weight.value, 1.0);
  Ema<D> ema(0.5);
  ema.update(lin);  // shadow = 1
  fill(lin.weight.value, 3.0);
  ema.update(lin);  // shadow = 2
  ema.swap(lin);
  CHECK(to_host(lin.weight.value)(0, 0) == doctest::Approx(2.0));
  ema.swap(lin);
  CHECK(to_host(lin.weight.value)(0, 0) == doctest::Approx(3.0));
}

TEST_CASE("EMA warm-up uses decay min(d, (1+t)/(10+t)) so early weights fade in short runs") {
  Rng rng(3);
  Linear<D> lin(1, 1, rng, false);
  fill(lin.weight.value, 1.0);
  Ema<D> ema(0.999, true);
  ema.update(lin);  // t = 0: copy
  fill(lin.weight.value, 3.0);
  ema.update(lin);  // t = 1: d = 2/11
  ema.swap(lin);
  CHECK(to_host(lin.weight.value)(0, 0) == doctest::Approx(2.0 / 11.0 + 3.0 * 9.0 / 11.0));
  CHECK(ema.updates() == 2);
}

namespace {
using Nvp = Repeat<dynamic, AffineCoupling<F>>;
Nvp small_flow(std::uint64_t seed) {
  Rng rng(seed);
  return Nvp(4, [&](std::size_t i) { return make_coupling<F>(masks::half(2, int(i % 2)), {32, 32}, rng); });
}
HostMatrix<float> train_and_dump(std::uint64_t seed, long steps) {
  Nvp flow = small_flow(seed);
  TrainOptions o;
  o.total_steps = steps;
  o.warmup = 5;
  o.ema_decay = 0.9;
  o.verbose = false;
  MleTrainer<Nvp> t(flow, o);
  Rng data(seed + 1);
  for (long s = 0; s < steps; ++s) t.step(from_host<F>(data::toy("moons", 64, data).cast<float>()));
  HostMatrix<float> all(0, 1);
  flow.visit_parameters([&](const std::string&, auto& p) {
    const auto v = to_host(p.value);
    all.conservativeResize(all.rows() + v.size(), 1);
    all.bottomRows(v.size()) = Eigen::Map<const Eigen::VectorXf>(v.data(), v.size());
  }, "");
  return all;
}
}  // namespace

TEST_CASE("same seed gives bit-identical parameters after training on Cpu; another seed does not") {
  const auto a = train_and_dump(7, 30), b = train_and_dump(7, 30), c = train_and_dump(8, 30);
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.size())) == 0);
  CHECK((a - c).cwiseAbs().maxCoeff() > 0);
}

TEST_CASE("a NaN batch is skipped and counted, parameters unchanged; K bad steps in a row stop training") {
  Nvp flow = small_flow(1);
  TrainOptions o;
  o.max_bad_steps = 3;
  o.verbose = false;
  MleTrainer<Nvp> t(flow, o);
  Rng data(2);
  t.step(from_host<F>(data::toy("moons", 32, data).cast<float>()));
  HostMatrix<float> bad = data::toy("moons", 32, data).cast<float>();
  bad(5, 1) = std::nanf("");
  const auto before = to_host(layer<1>(flow).net.linear(0).weight.value);
  const StepResult r = t.step(from_host<F>(bad));
  CHECK(r.skipped);
  CHECK(t.skipped_steps() == 1);
  CHECK((to_host(layer<1>(flow).net.linear(0).weight.value) - before).cwiseAbs().maxCoeff() == 0.0f);
  t.step(from_host<F>(data::toy("moons", 32, data).cast<float>()));  // a good step resets the streak
  t.step(from_host<F>(bad));
  t.step(from_host<F>(bad));
  try {
    t.step(from_host<F>(bad));
    FAIL("expected numeric_error after 3 consecutive bad steps");
  } catch (const numeric_error& e) {
    CHECK(std::string(e.what()).find("3 consecutive steps") != std::string::npos);
  }
}

TEST_CASE("a trained 2-D flow beats a Gaussian and its density integrates to about 1 on a grid") {
  using Maf = Repeat<dynamic, Sequential<MaskedAutoregressive<F>, Permutation<F>>>;
  Rng rng(3);
  Maf flow(4, [&](std::size_t) {
    return Sequential<MaskedAutoregressive<F>, Permutation<F>>(MaskedAutoregressive<F>(2, {32, 32}, rng),
                                                               Permutation<F>::reverse(2));
  });
  Rng data(4), tdata(5);
  const HostMatrix<double> train = data::toy("8gaussians", 4000, data), test = data::toy("8gaussians", 2000, tdata);
  const auto sz = data::Standardizer::fit(train);
  const HostMatrix<double> u = sz.transform(train);
  TrainOptions o;
  o.total_steps = 600;
  o.lr = 3e-3;
  o.verbose = false;
  MleTrainer<Maf> t(flow, o);
  Rng pick(6);
  HostMatrix<double> xb(128, 2);
  for (long s = 0; s < o.total_steps; ++s) {
    for (long i = 0; i < 128; ++i) xb.row(i) = u.row(long(pick.below(std::uint64_t(u.rows()))));
    t.step(from_host<F>(xb.cast<float>()));
  }
  const double test_nll = nll(flow, from_host<F>(sz.transform(test).cast<float>())) - sz.log_abs_det();
  CHECK(test_nll < data::gaussian_nll(train, test) - 0.5);
  // ∫ p(x) dx over [-6, 6]² (all 8 modes lie within radius ~3.5)
  const int n = 240;
  HostMatrix<double> grid(n * n, 2);
  const double h = 12.0 / n;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) grid.row(i * n + j) << -6 + (j + 0.5) * h, -6 + (i + 0.5) * h;
  const HostMatrix<double> lp = to_host(log_prob(flow, from_host<F>(sz.transform(grid).cast<float>()))).cast<double>();
  const double integral = (lp.array() + sz.log_abs_det()).exp().sum() * h * h;
  CHECK(integral == doctest::Approx(1.0).epsilon(0.02));
}

TEST_CASE("conditional MAF learns a context-dependent density (class label as one-hot context)") {
  Rng rng(9);
  MaskedAutoregressive<F> maf(1, {16}, rng, 2);
  TrainOptions o;
  o.total_steps = 300;
  o.lr = 1e-2;
  o.verbose = false;
  MleTrainer<MaskedAutoregressive<F>> t(maf, o);
  Rng d(10);
  HostMatrix<float> x(128, 1);
  std::vector<int> labels(128);
  for (long s = 0; s < o.total_steps; ++s) {
    for (long i = 0; i < 128; ++i) {
      labels[std::size_t(i)] = int(d.below(2));
      x(i, 0) = float((labels[std::size_t(i)] ? 3.0 : -3.0) + 0.5 * d.normal());
    }
    t.step(from_host<F>(x), from_host<F>(data::one_hot(labels, 2)));
  }
  const HostMatrix<float> c0 = data::one_hot(std::vector<int>(2000, 0), 2), c1 = data::one_hot(std::vector<int>(2000, 1), 2);
  Rng s(11);
  const auto s0 = to_host(sample(maf, 2000, s, from_host<F>(c0))), s1 = to_host(sample(maf, 2000, s, from_host<F>(c1)));
  CHECK(s0.mean() == doctest::Approx(-3.0).epsilon(0.05));
  CHECK(s1.mean() == doctest::Approx(3.0).epsilon(0.05));
}
