// Compiled and linked against the installed biflow::cuda (no GPU needed to build; run it on one to see it train).
#include <biflow/biflow.hpp>
#include <cstdio>
int main() {
  using B = biflow::Cuda<float>;
  if (biflow::gpu::device_count() == 0) {
    std::printf("consumer_cuda: built against biflow::cuda; no GPU here, nothing to run\n");
    return 0;
  }
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
  std::printf("consumer_cuda: loss %.3f -> %.3f\n", first, last);
  return last < first ? 0 : 1;
}
