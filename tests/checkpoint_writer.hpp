#pragma once
// The model of tests/checkpoint_writer.cpp, shared with the kill test in test_io.cpp that loads its checkpoints.
#include <biflow/models/tarflow.hpp>
#include <biflow/reverse/reverse_model.hpp>

namespace tests {
/// A checkpoint of this TarFlow (parameters, AdamW moments, EMA) is ~1 MB: with fsync, writing is a good part of
/// each step, so kills land inside writes.
inline biflow::TarFlowConfig checkpoint_writer_config() {
  biflow::TarFlowConfig cfg;
  cfg.image = {1, 8, 8, 2};
  cfg.width = 32;
  cfg.blocks = 4;
  cfg.layers = 1;
  cfg.heads = 2;
  return cfg;
}
/// The learned inverse G the writer trains in "reverse" mode, against the (frozen) TarFlow above.
inline biflow::ReverseConfig checkpoint_writer_reverse_config() {
  const biflow::TarFlowConfig f = checkpoint_writer_config();
  biflow::ReverseConfig c;
  c.tokens = f.image.tokens();
  c.token_dim = f.image.token_dim();
  c.width = 32;
  c.stages = 2;
  c.layers = 1;
  c.heads = 2;
  return c;
}
}  // namespace tests
