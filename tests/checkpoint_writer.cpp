// Helper process for test_io's kill test: a training run that resumes from the checkpoint at argv[1] when one
// exists, then trains and writes a checkpoint after every step until it is killed. It prints 'S' to stdout as
// a checkpoint write starts and 'D' when it is done, so the test can kill it inside writes.
//   checkpoint_writer PATH            trains a TarFlow by maximum likelihood (MleTrainer)
//   checkpoint_writer PATH reverse    trains a learned inverse G against that TarFlow, frozen (ReverseTrainer)
#include <cstdio>
#include <filesystem>
#include <string>

#include <biflow/biflow.hpp>

#include "checkpoint_writer.hpp"

using namespace biflow;

int main(int argc, char** argv) try {
  if (argc != 2 && argc != 3) return 2;
  Rng init(1);
  TarFlow<Cpu<float>> flow(tests::checkpoint_writer_config(), init);
  TrainOptions o;
  o.ema_decay = 0.99;
  o.verbose = false;
  if (argc == 3) {
    if (std::string(argv[2]) != "reverse") return 2;
    const ReverseConfig rc = tests::checkpoint_writer_reverse_config();
    ReverseModel<Cpu<float>> g(rc, init);
    HiddenAlignment<Cpu<float>> heads(rc, init);
    ReverseTrainOptions ro;
    ro.optim = o;
    ReverseTrainer<TarFlow<Cpu<float>>, ReverseModel<Cpu<float>>, HiddenAlignment<Cpu<float>>> trainer(flow, g, heads, ro);
    auto trainable = trainer.trainable();
    Rng data(7);
    if (std::filesystem::exists(argv[1])) load_checkpoint(argv[1], trainable, trainer, {{"data", &data}});
    for (;;) {
      Tensor<Cpu<float>> x(16, 64);
      fill_normal(x, data, 0.0f, 0.5f);
      trainer.step(x, {}, data);
      std::fputc('S', stdout);
      std::fflush(stdout);
      save_checkpoint(argv[1], trainable, trainer, {{"data", &data}}, {{"writer", "checkpoint_writer reverse"}});
      std::fputc('D', stdout);
      std::fflush(stdout);
    }
  }
  MleTrainer<TarFlow<Cpu<float>>> trainer(flow, o);
  Rng data(7);
  if (std::filesystem::exists(argv[1])) load_checkpoint(argv[1], flow, trainer, {{"data", &data}});
  for (;;) {
    Tensor<Cpu<float>> x(16, 64);
    fill_normal(x, data, 0.0f, 0.5f);
    trainer.step(x);
    std::fputc('S', stdout);
    std::fflush(stdout);
    save_checkpoint(argv[1], flow, trainer, {{"data", &data}}, {{"writer", "checkpoint_writer"}});
    std::fputc('D', stdout);
    std::fflush(stdout);
  }
} catch (const std::exception& e) {
  std::fprintf(stderr, "checkpoint_writer: %s\n", e.what());
  return 3;
}
