// nn modules (nn/linear.hpp, activation.hpp, mlp.hpp, layer_norm.hpp, module.hpp): gradients vs finite
// differences (double), behaviour, masks, names.
#include "helpers.hpp"

using namespace tests;
using D = biflow::Cpu<double>;

static void check_grads(const testing::CheckReport& r) { check_module_report(r); }

TEST_CASE("Linear gradients match finite differences and its output is x W^T + b") {
  Rng rng(1);
  Linear<D> lin(4, 3, rng);
  const auto x = randn<D>(5, 4, 2);
  check_grads(testing::check_module(lin, x));
  typename Linear<D>::Context c;
  const HostMatrix<double> want = (to_host(x) * to_host(lin.weight.value).transpose()).rowwise() +
                                  to_host(lin.bias.value).row(0);
  CHECK((to_host(lin.forward(x, c)) - want).cwiseAbs().maxCoeff() < 1e-12);
  Linear<D> nobias(4, 3, rng, false);
  check_grads(testing::check_module(nobias, x));
  std::vector<std::string> names;
  nobias.visit_parameters([&](const std::string& n, auto&) { names.push_back(n); }, "proj");
  CHECK(names == std::vector<std::string>{"proj.weight"});
}

TEST_CASE("MaskedLinear ignores masked weights entirely and its gradients respect the mask") {
  Rng rng(3);
  MaskedLinear<D> ml(3, 2, rng);
  HostMatrix<double> mask(2, 3);
  mask << 1, 0, 1, 0, 1, 0;
  ml.set_mask(from_host<D>(mask));
  check_grads(testing::check_module(ml, randn<D>(4, 3, 4)));
  typename MaskedLinear<D>::Context c;
  const auto x = randn<D>(4, 3, 5);
  const auto y0 = to_host(ml.forward(x, c));
  auto w = to_host(ml.weight.value);
  w(0, 1) += 100;  // masked entry
  ml.weight.value = from_host<D>(w);
  CHECK((to_host(ml.forward(x, c)) - y0).cwiseAbs().maxCoeff() == 0.0);
  zero_grad(ml);
  ml.forward(x, c);
  ml.backward(c, randn<D>(4, 2, 6));
  CHECK(to_host(ml.weight.grad)(0, 1) == 0.0);
  CHECK_THROWS_AS(ml.set_mask(from_host<D>(HostMatrix<double>::Ones(3, 3))), shape_error);
}

TEST_CASE_TEMPLATE("activation gradients match finite differences", A, act::ReLU, act::GELU, act::SiLU, act::Tanh) {
  Activation<D, A> a(6);
  auto x = to_host(randn<D>(4, 6, 7));
  x = (x.array().abs() + 0.05).matrix().cwiseProduct(to_host(randn<D>(4, 6, 8)).cwiseSign());  // keep ReLU off its kink
  check_grads(testing::check_module(a, from_host<D>(x)));
}

TEST_CASE("activation values match their definitions") {
  CHECK(act::ReLU::value(-2.0) == 0.0);
  CHECK(act::GELU::value(1.0) == doctest::Approx(0.8413447460685429));
  CHECK(act::SiLU::value(1.0) == doctest::Approx(0.7310585786300049));
  CHECK(act::Tanh::value(0.5) == doctest::Approx(std::tanh(0.5)));
}

TEST_CASE_TEMPLATE("MLP gradients match finite differences for every activation (fused and unfused paths)", A,
                   act::ReLU, act::Tanh, act::GELU, act::SiLU) {
  Rng rng(8);
  MLP<D, A> mlp({3, 7, 6, 2}, rng);
  check_grads(testing::check_module(mlp, randn<D>(5, 3, 9)));
  // The fused forward equals Linear → Activation → Linear → … applied one module at a time.
  const auto x = randn<D>(4, 3, 10);
  typename MLP<D, A>::Context c;
  const auto y = to_host(mlp.forward(x, c));
  Tensor<D> h = x;
  for (std::size_t i = 0; i < mlp.num_linear(); ++i) {
    typename Linear<D>::Context lc;
    h = mlp.linear(i).forward(h, lc);
    if (i + 1 < mlp.num_linear()) h = zip(fn::ActValue<A>{}, h);
  }
  CHECK((to_host(h) - y).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("MLP gradients match finite differences; parameters named like torch.nn.Sequential") {
  Rng rng(9);
  MLP<D, act::SiLU> mlp({3, 8, 8, 2}, rng);
  check_grads(testing::check_module(mlp, randn<D>(5, 3, 10)));
  std::vector<std::string> names;
  mlp.visit_parameters([&](const std::string& n, auto&) { names.push_back(n); }, "net");
  CHECK(names == std::vector<std::string>{"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight",
                                          "net.4.bias"});
  CHECK(parameter_count(mlp) == 3 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2);
  CHECK_THROWS_AS(MLP<D>(std::vector<long>{3}, rng), usage_error);
}

TEST_CASE("LayerNorm gradients match finite differences and it normalises rows") {
  LayerNorm<D> ln(5);
  randomize(ln, 11);
  check_grads(testing::check_module(ln, randn<D>(4, 5, 12, 3.0)));
  LayerNorm<D> plain(5);
  typename LayerNorm<D>::Context c;
  const auto y = to_host(plain.forward(randn<D>(3, 5, 13, 3.0), c));
  CHECK(y.rowwise().mean().cwiseAbs().maxCoeff() < 1e-12);
  CHECK(((y.array().square().rowwise().mean()) - 1).abs().maxCoeff() < 1e-4);
}

TEST_CASE("nn modules satisfy the Module concept") {
  static_assert(Module<Linear<D>> && Module<MaskedLinear<D>> && Module<MLP<D>> && Module<LayerNorm<D>> &&
                Module<Activation<D, act::GELU>>);
  static_assert(FlowLayer<AffineCoupling<D>> && FlowLayer<MaskedAutoregressive<D>> && FlowLayer<Permutation<D>> &&
                FlowLayer<LULinear<D>> && FlowLayer<ActNorm<D>>);
  CHECK(check_module_contract<Linear<Cpu<float>>>());
}

TEST_CASE("Stack applies its modules in order, passes the module checks, and names parameters by position") {
  Rng rng(40);
  Stack<Linear<D>> st(3, [&](std::size_t i) { return Linear<D>(i == 0 ? 4 : 5, 5, rng); });
  randomize(st, 41);
  CHECK(st.in_features() == 4);
  CHECK(st.out_features() == 5);
  const auto x = randn<D>(6, 4, 42);
  CHECK((to_host(st.forward(x)) - to_host(st[2].forward(st[1].forward(st[0].forward(x))))).cwiseAbs().maxCoeff() ==
        0.0);
  check_grads(testing::check_module(st, x));
  std::vector<std::string> names;
  st.visit_parameters([&](const std::string& n, auto&) { names.push_back(n); }, "layers");
  CHECK(names.front() == "layers.0.weight");
  CHECK(names.back() == "layers.2.bias");
  // A stack of transformer layers (how TARFlow blocks and reverse stages hold theirs) passes too.
  Stack<TransformerLayer<D>> tl(2, [&](std::size_t) { return TransformerLayer<D>(8, 2, 3, true, rng); });
  randomize(tl, 43, 0.2);
  check_grads(testing::check_module(tl, randn<D>(2 * 3, 8, 44)));
  CHECK(message<shape_error>([&] {
          Stack<Linear<D>>(2, [&](std::size_t) { return Linear<D>(4, 5, rng); });
        }).find("module 1 takes 4 features, module 0 gives 5") != std::string::npos);
  typename Stack<Linear<D>>::Context empty;
  CHECK(message<usage_error>([&] { st.backward(empty, randn<D>(6, 5, 45)); }).find("run forward(x, ctx) first") !=
        std::string::npos);
}
