#pragma once
// The model of tests/checkpoint_writer.cpp, shared with the kill test in test_io.cpp that loads its checkpoints.
#include <biflow/models/tarflow.hpp>

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
}  // namespace tests
