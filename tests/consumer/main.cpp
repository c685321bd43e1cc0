// Builds against the installed package and trains a tiny flow: proves headers, config and Eigen link up.
#include <biflow/biflow.hpp>
#include <cstdio>
int main() {
  using B = biflow::Cpu<float>;
  biflow::Rng rng(0);
  auto flow = biflow::make_coupling<B>(biflow::masks::half(2, 0), {16}, rng);
  biflow::TrainOptions o;
  o.total_steps = 50;
  biflow::MleTrainer<decltype(flow)> t(flow, o);
  double first = 0, last = 0;
  for (int s = 0; s < 50; ++s) {
    const auto r = t.step(biflow::from_host<B>(biflow::data::toy("moons", 128, rng).cast<float>()));
    (s == 0 ? first : last) = r.loss;
  }
  std::printf("consumer: loss %.3f -> %.3f\n", first, last);
  return last < first ? 0 : 1;
}
