// Misuse at run time: wrong shapes and missing contexts raise biflow errors naming expected and actual.
#include "helpers.hpp"

using namespace tests;
using F = biflow::Cpu<float>;


TEST_CASE("a flow layer given the wrong number of features names expected and actual") {
  Rng rng(1);
  auto l = make_coupling<F>(masks::half(4, 0), {8}, rng);
  typename decltype(l)::Context c;
  const auto m = message<shape_error>([&] { l.forward(Tensor<F>(3, 5), c); });
  CHECK(m == "AffineCoupling.forward: expected 4 features (columns), got 5 (input is 3x5)");
  CHECK(message<shape_error>([&] { l.inverse(Tensor<F>(3, 2)); }).find("expected 4 features") != std::string::npos);
}

TEST_CASE("a conditional layer without a context, or with a wrongly shaped one, says so") {
  Rng rng(2);
  MaskedAutoregressive<F> maf(3, {8}, rng, 2);
  typename MaskedAutoregressive<F>::Context c;
  CHECK(message<shape_error>([&] { maf.forward(Tensor<F>(4, 3), c); }) ==
        "MaskedAutoregressive.forward: this layer is conditional and needs a 4x2 context, got none");
  CHECK(message<shape_error>([&] { maf.forward(Tensor<F>(4, 3), c, Tensor<F>(4, 3)); }) ==
        "MaskedAutoregressive.forward: expected a 4x2 context, got 4x3");
}

TEST_CASE("nn modules and primitives reject bad shapes with both shapes in the message") {
  Rng rng(3);
  Linear<F> lin(3, 2, rng);
  typename Linear<F>::Context c;
  CHECK(message<shape_error>([&] { lin.forward(Tensor<F>(2, 4), c); }) ==
        "Linear.forward: expected 3 columns (features), got 4 (tensor is 2x4)");
  lin.forward(Tensor<F>(2, 3), c);
  CHECK(message<shape_error>([&] { lin.backward(c, Tensor<F>(5, 2)); }) ==
        "Linear.backward: expected a 2x2 tensor, got 5x2");
  Tensor<F> out;
  CHECK(message<shape_error>([&] { gemm(Tensor<F>(2, 3), false, Tensor<F>(4, 2), false, out); })
            .find("inner dimensions differ") != std::string::npos);
  CHECK(message<shape_error>([&] { zip(fn::Add{}, Tensor<F>(2, 3), Tensor<F>(3, 3)); })
            .find("cannot broadcast a 2x3 tensor to 3x3") != std::string::npos);
  CHECK(message<shape_error>([&] { slice_cols(Tensor<F>(2, 3), 2, 2); }).find("out of range") != std::string::npos);
}

TEST_CASE("bad construction arguments raise usage errors") {
  Rng rng(4);
  CHECK_THROWS_AS(Linear<F>(0, 3, rng), usage_error);
  CHECK_THROWS_AS(MaskedAutoregressive<F>(0, {4}, rng), usage_error);
  CHECK_THROWS_AS(MaskedAutoregressive<F>(3, {}, rng), usage_error);
  CHECK_THROWS_AS(make_coupling<F>(std::vector<int>{0, 2}, {4}, rng), usage_error);
  MLP<F> wrong({3, 4, 3}, rng);
  CHECK(message<shape_error>([&] { AffineCoupling<F>(masks::half(2, 0), wrong); })
            .find("must map 2 -> 4 features") != std::string::npos);
}
