// The usage snippet of README.md, verbatim in the test body, so the documentation cannot rot.
#include "helpers.hpp"

TEST_CASE("the README usage snippet compiles, trains and samples") {
  using namespace biflow;
  using B = Cpu<float>;

  Rng rng(0);
  using Block = Sequential<MaskedAutoregressive<B>, Permutation<B>>;
  Repeat<8, Block> flow([&](std::size_t) {
    return Block(MaskedAutoregressive<B>(2, {64, 64}, rng), Permutation<B>::reverse(2));
  });
  MleTrainer<decltype(flow)> trainer(flow, {.lr = 1e-3, .total_steps = 300});
  for (int s = 0; s < 300; ++s)
    trainer.step(from_host<B>(data::toy("moons", 256, rng).cast<float>()));

  Tensor<B> lp = log_prob(flow, from_host<B>(data::toy("moons", 1000, rng).cast<float>()));
  Tensor<B> x = sample(flow, 1000, rng);

  CHECK(lp.rows() == 1000);
  CHECK(x.cols() == 2);
  CHECK(-double(sum(lp)) / 1000 < 1.9);  // beats a full-covariance Gaussian on moons (1.91 nats)
  CHECK(all_finite(x));
}
