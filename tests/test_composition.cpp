// Compile-time composition (flow/sequential.hpp): trajectory, indexed access, names, data init, log-det policies.
#include "helpers.hpp"

using namespace tests;
using D = biflow::Cpu<double>;

TEST_CASE("forward_trajectory returns x0..xB with x0 = x and xB = forward(x)") {
  Rng rng(1);
  using Blk = AffineCoupling<D>;
  Repeat<4, Blk> flow([&](std::size_t i) {
    auto l = make_coupling<D>(masks::half(3, int(i % 2)), {5}, rng);
    randomize(l, i + 1);
    return l;
  });
  const auto x = randn<D>(6, 3, 2);
  typename decltype(flow)::Context ctx;
  const auto traj = flow.forward_trajectory(x, ctx);
  REQUIRE(traj.states.size() == 5);
  CHECK((to_host(traj.states[0]) - to_host(x)).cwiseAbs().maxCoeff() == 0.0);
  typename decltype(flow)::Context c2;
  const auto out = flow.forward(x, c2);
  CHECK((to_host(traj.states[4]) - to_host(out.y)).cwiseAbs().maxCoeff() == 0.0);
  CHECK((to_host(traj.logdet) - to_host(out.logdet)).cwiseAbs().maxCoeff() < 1e-12);
  // Each state is the previous one pushed through block i.
  for (std::size_t i = 0; i < 4; ++i) {
    typename Blk::Context c;
    const auto yi = flow.block(i).forward(traj.states[i], c).y;
    CHECK((to_host(yi) - to_host(traj.states[i + 1])).cwiseAbs().maxCoeff() == 0.0);
  }
  // The backward through a trajectory-forward context equals the plain one: input and parameter gradients.
  const auto dy = randn<D>(6, 3, 3), dl = randn<D>(6, 1, 4);
  auto grads = [&](auto& f) {
    std::vector<HostMatrix<double>> g;
    f.visit_parameters([&](const std::string&, auto& p) { g.push_back(to_host(p.grad)); }, "");
    return g;
  };
  auto f1 = flow, f2 = flow;
  zero_grad(f1);
  zero_grad(f2);
  typename decltype(flow)::Context ct, cp;
  f1.forward_trajectory(x, ct);
  f2.forward(x, cp);
  const auto dx1 = to_host(f1.backward(ct, dy, dl)), dx2 = to_host(f2.backward(cp, dy, dl));
  CHECK((dx1 - dx2).cwiseAbs().maxCoeff() < 1e-14);
  CHECK(dx1.cwiseAbs().maxCoeff() > 0.0);
  const auto g1 = grads(f1), g2 = grads(f2);
  REQUIRE(g1.size() == g2.size());
  for (std::size_t i = 0; i < g1.size(); ++i) CHECK((g1[i] - g2[i]).cwiseAbs().maxCoeff() < 1e-14);
  Sequential<Permutation<D>, Blk> seq(Permutation<D>::reverse(3), flow.block(0));
  typename decltype(seq)::Context sc;
  const auto st = seq.forward_trajectory(x, sc);
  CHECK(st.states.size() == 3);
  // Inference trajectories (no context) have the same states and log-det, for Repeat and Sequential.
  const auto it = flow.forward_trajectory(x);
  REQUIRE(it.states.size() == traj.states.size());
  for (std::size_t i = 0; i < it.states.size(); ++i)
    CHECK((to_host(it.states[i]) - to_host(traj.states[i])).cwiseAbs().maxCoeff() == 0.0);
  CHECK((to_host(it.logdet) - to_host(traj.logdet)).cwiseAbs().maxCoeff() == 0.0);
  const auto sit = seq.forward_trajectory(x);
  for (std::size_t i = 0; i < sit.states.size(); ++i)
    CHECK((to_host(sit.states[i]) - to_host(st.states[i])).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("gradient modes through a composition: params_only gives the same parameter gradients and no dx, "
          "input_only the same dx and no parameter gradient, frozen parameters none") {
  Rng rng(3);
  Repeat<3, AffineCoupling<D>> flow([&](std::size_t i) {
    auto l = make_coupling<D>(masks::half(4, int(i % 2)), {6}, rng);
    randomize(l, i + 10);
    return l;
  });
  const auto x = randn<D>(5, 4, 4), dy = randn<D>(5, 4, 5), dl = randn<D>(5, 1, 6);
  typename decltype(flow)::Context c;
  flow.forward(x, c);
  zero_grad(flow);
  const auto dx = to_host(flow.backward(c, dy, dl));
  const auto full = testing::detail::grads_of(flow);
  zero_grad(flow);
  CHECK(flow.backward(c, dy, dl, GradMode::params_only).empty());
  CHECK(testing::detail::max_abs_diff(testing::detail::grads_of(flow), full) == 0.0);
  zero_grad(flow);
  CHECK((to_host(flow.backward(c, dy, dl, GradMode::input_only)) - dx).cwiseAbs().maxCoeff() == 0.0);
  for (const auto& g : testing::detail::grads_of(flow)) CHECK(g.cwiseAbs().maxCoeff() == 0.0);
  // freeze(): no parameter gradient even under GradMode::all; unfreeze() restores them.
  freeze(flow);
  flow.backward(c, dy, dl);
  for (const auto& g : testing::detail::grads_of(flow)) CHECK(g.cwiseAbs().maxCoeff() == 0.0);
  unfreeze(flow);
  flow.backward(c, dy, dl);
  CHECK(testing::detail::max_abs_diff(testing::detail::grads_of(flow), full) == 0.0);
}

TEST_CASE("layer<I> gives typed access and parameter names nest like PyTorch state_dict keys") {
  Rng rng(3);
  using Blk = Sequential<MaskedAutoregressive<D>, Permutation<D>>;
  Repeat<2, Blk> flow([&](std::size_t) { return Blk(MaskedAutoregressive<D>(2, {4}, rng), Permutation<D>::reverse(2)); });
  MaskedAutoregressive<D>& first = layer<0>(layer<1>(flow));
  CHECK(first.features() == 2);
  std::vector<std::string> names;
  flow.visit_parameters([&](const std::string& n, auto&) { names.push_back(n); }, "");
  CHECK(names.front() == "0.0.net.0.weight");
  CHECK(names.back() == "1.0.net.2.bias");
  CHECK(names.size() == 8);
}

TEST_CASE("Sequential rejects layers of different widths with a message naming both") {
  Rng rng(4);
  try {
    Sequential<Permutation<D>, Permutation<D>> s(Permutation<D>::reverse(3), Permutation<D>::reverse(4));
    FAIL("expected shape_error");
  } catch (const shape_error& e) {
    CHECK(std::string(e.what()).find("layer 1 has 4 features, layer 0 has 3") != std::string::npos);
  }
  CHECK_THROWS_AS((Repeat<dynamic, Permutation<D>>(0, [](std::size_t) { return Permutation<D>::reverse(2); })),
                  usage_error);
}

TEST_CASE("data_init initialises every ActNorm in a composition from the batch it sees") {
  Rng rng(5);
  Repeat<2, Sequential<ActNorm<D>, LULinear<D>>> flow(
      [&](std::size_t) { return Sequential<ActNorm<D>, LULinear<D>>(ActNorm<D>(3), LULinear<D>(3, rng)); });
  const auto x = randn<D>(400, 3, 6, 5.0);
  flow.data_init(x);
  CHECK(layer<0>(layer<0>(flow)).initialized());
  CHECK(layer<0>(layer<1>(flow)).initialized());
  // The second ActNorm saw whitened-then-rotated data, so its output is whitened too.
  typename decltype(flow)::Context c;
  const auto z = to_host(flow.forward(x, c).y);
  CHECK(z.colwise().mean().cwiseAbs().maxCoeff() < 1e-6);
}

TEST_CASE("log-det policies: None leaves it empty, BruteForce equals Analytic, inverse negates") {
  Rng rng(7);
  auto l = make_coupling<D>(masks::half(3, 1), {5}, rng);
  randomize(l, 8);
  const auto x = randn<D>(4, 3, 9);
  typename decltype(l)::Context c;
  CHECK(l.forward(x, c, {}, logdet::none).logdet.empty());
  const auto a = l.forward(x, c, {}, logdet::analytic);
  const auto b = l.forward(x, c, {}, logdet::brute_force);
  CHECK((to_host(a.logdet) - to_host(b.logdet)).cwiseAbs().maxCoeff() < 1e-12);
  const auto inv = l.inverse(a.y, {}, logdet::brute_force);
  CHECK((to_host(inv.logdet) + to_host(a.logdet)).cwiseAbs().maxCoeff() < 1e-10);
}

TEST_CASE("an inverse option (TARFlow guidance) passes through Sequential and Repeat to the layers that take it") {
  using Blk = TarBlock<D>;
  Rng rng(80);
  const typename Blk::Config bc{4, 2, 8, 1, 2, 3, 4.0, 0.0};
  Blk b0(bc, Blk::identity_order(4), rng), b1(bc, Blk::reversed_order(4), rng);
  randomize(b0, 81, 0.3);
  randomize(b1, 82, 0.3);
  Sequential<Permutation<D>, Repeat<2, Blk>> flow(Permutation<D>::reverse(8), Repeat<2, Blk>([&](std::size_t i) {
                                                    return i == 0 ? b0 : b1;
                                                  }));
  static_assert(TakesInverseOption<decltype(flow), Guidance<D>>);
  static_assert(!TakesInverseOption<Sequential<Permutation<D>>, Guidance<D>>);
  const auto z = randn<D>(3, 8, 83);
  const auto cond = from_host<D>(data::one_hot<double>({0, 1, 0}, 3));
  const Guidance<D> g{1.5, true, {}};
  // By hand: the blocks' guided decode in reverse, then the permutation's inverse.
  const auto h1 = b1.decode(z, cond, g);
  const auto h0 = b0.decode(h1.y, cond, g);
  const auto x = Permutation<D>::reverse(8).inverse(h0.y, {}, logdet::none).y;
  const auto o = flow.inverse(z, cond, g);
  CHECK((to_host(o.y) - to_host(x)).cwiseAbs().maxCoeff() == 0.0);
  CHECK((to_host(o.logdet) - to_host(h1.logdet) - to_host(h0.logdet)).cwiseAbs().maxCoeff() < 1e-12);
  // Guidance changes the result; scale 0 is the plain inverse; the uncached option agrees with the cached one.
  CHECK((to_host(o.y) - to_host(flow.inverse(z, cond).y)).cwiseAbs().maxCoeff() > 1e-6);
  CHECK((to_host(flow.inverse(z, cond, Guidance<D>{}).y) - to_host(flow.inverse(z, cond).y)).cwiseAbs().maxCoeff() == 0.0);
  CHECK((to_host(flow.inverse(z, cond, UncachedDecode<D>{g}).y) - to_host(o.y)).cwiseAbs().maxCoeff() < 1e-10);
}
