#pragma once
// Training checkpoints that lose nothing: parameters, AdamW moments, EMA average, step counters, the state of
// any number of named Rng streams, and user config strings, in one safetensors file written atomically (a crash
// mid-write leaves the previous checkpoint intact). Resuming from it reproduces an uninterrupted run bit for bit
// on Cpu (same thread count).
//   tensors:  "model.<name>" (parameters and buffers), "optim.m.<name>", "optim.v.<name>", "ema.<name>"
//             (<name> = PyTorch-style names)
//   metadata: "format" = "biflow-checkpoint-2" (0.3: with buffers), "step", "skipped", "consecutive_bad", "optim.steps", "ema.updates",
//             "ema.tensors",
//             "rng.<key>.seed", "rng.<key>.counter", "config.<key>"
#include <map>
#include <string>
#include <vector>

#include "../io/safetensors.hpp"
#include "optimization.hpp"

namespace biflow {

namespace ckpt_detail {
inline std::uint64_t number(const std::map<std::string, std::string>& meta, const std::string& key,
                            const std::string& path) {
  const auto it = meta.find(key);
  if (it == meta.end()) throw io_error(detail::cat("checkpoint '", path, "': metadata has no '", key, "'"));
  const std::string& s = it->second;
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
    throw io_error(detail::cat("checkpoint '", path, "': metadata '", key, "' = '", s, "' is not a number"));
  return std::stoull(s);
}
}  // namespace ckpt_detail

/// What a checkpoint needs from a trainer: the shared optimiser state (MleTrainer and ReverseTrainer have it).
template <class Tr>
concept CheckpointableTrainer = requires(Tr& t) {
  t.optimizer();
  t.ema();
  t.counters();
  t.set_counters(t.counters());
};

/// Writes model + trainer state + the named Rng streams + config strings to path, atomically. `model` is what the
/// trainer's optimiser updates: the flow for MleTrainer, `trainer.trainable()` (G and its heads) for
/// ReverseTrainer. The EMA average covers the model's first parameters (all of a flow, G's part of a trainable).
template <HasParameters F, CheckpointableTrainer Tr>
void save_checkpoint(const std::string& path, F&& model, Tr& trainer,
                     const std::map<std::string, const Rng*>& rngs = {},
                     const std::map<std::string, std::string>& config = {}) {
  std::vector<io::TensorBlob> ts;
  std::vector<std::string> names;
  model.visit_parameters([&](const std::string& name, auto& p) {
    ts.push_back(io::blob("model." + name, to_host(p.value)));
    names.push_back(name);
  }, "");
  visit_buffers_of(model, [&](const std::string& name, const Buffer& b) { ts.push_back(io::buffer_blob("model." + name, b)); }, "");
  auto& opt = trainer.optimizer();
  for (std::size_t i = 0; i < opt.first_moments().size(); ++i) {
    ts.push_back(io::blob("optim.m." + opt.names()[i], to_host(opt.first_moments()[i])));
    ts.push_back(io::blob("optim.v." + opt.names()[i], to_host(opt.second_moments()[i])));
  }
  auto& ema = trainer.ema();
  for (std::size_t i = 0; i < ema.shadow().size(); ++i) ts.push_back(io::blob("ema." + names.at(i), to_host(ema.shadow()[i])));
  std::map<std::string, std::string> meta{{"format", "biflow-checkpoint-2"}};
  const auto c = trainer.counters();
  meta["step"] = std::to_string(c.step);
  meta["skipped"] = std::to_string(c.skipped);
  meta["consecutive_bad"] = std::to_string(c.consecutive_bad);
  meta["optim.steps"] = std::to_string(opt.steps());
  meta["ema.updates"] = std::to_string(ema.updates());
  meta["ema.tensors"] = std::to_string(ema.shadow().size());
  for (const auto& [k, r] : rngs) {
    meta["rng." + k + ".seed"] = std::to_string(r->seed());
    meta["rng." + k + ".counter"] = std::to_string(r->counter());
  }
  for (const auto& [k, v] : config) meta["config." + k] = v;
  io::write_safetensors(path, ts, meta);
}

/// Restores what save_checkpoint wrote into model, trainer and the named Rng streams; returns the config
/// strings. Everything is validated (names, shapes, counters) before anything is changed.
template <HasParameters F, CheckpointableTrainer Tr>
std::map<std::string, std::string> load_checkpoint(const std::string& path, F&& model, Tr& trainer,
                                                   const std::map<std::string, Rng*>& rngs = {}) {
  using B = typename std::remove_cvref_t<decltype(trainer.optimizer())>::backend_type;
  using T = typename B::scalar;
  const io::SafeTensorsFile f = io::read_safetensors(path);
  const auto& meta = f.header.metadata;
  const auto fmt = meta.find("format");
  if (fmt != meta.end() && fmt->second == "biflow-checkpoint-1")
    throw io_error(detail::cat("checkpoint '", path, "': written by biflow 0.2 (format biflow-checkpoint-1, without ",
                               "buffers); biflow 0.3 resumes only its own checkpoints"));
  if (fmt == meta.end() || fmt->second != "biflow-checkpoint-2")
    throw io_error(detail::cat("checkpoint '", path, "': not a biflow checkpoint (metadata 'format' is ",
                               fmt == meta.end() ? "missing" : "'" + fmt->second + "'", ")"));
  // Validate and stage everything first.
  std::vector<HostMatrix<T>> values, m, v, shadow;
  std::vector<std::string> names;
  model.visit_parameters([&](const std::string& name, auto& p) {
    if (!f.has("model." + name))
      throw io_error(detail::cat("checkpoint '", path, "': no tensor 'model.", name, "' (another architecture?)"));
    values.push_back(f.template matrix<T>("model." + name, p.value.rows(), p.value.cols()));
    if (f.has("optim.m." + name)) {
      m.push_back(f.template matrix<T>("optim.m." + name, p.value.rows(), p.value.cols()));
      v.push_back(f.template matrix<T>("optim.v." + name, p.value.rows(), p.value.cols()));
    }
    if (f.has("ema." + name)) {
      if (shadow.size() != names.size())
        throw io_error(detail::cat("checkpoint '", path, "': the EMA entries are not the model's first parameters ('",
                                   name, "' has one, an earlier parameter has none)"));
      shadow.push_back(f.template matrix<T>("ema." + name, p.value.rows(), p.value.cols()));
    }
    names.push_back(name);
  }, "");
  // Buffers (permutations, orders, masks, flags) must match the model as built; an old checkpoint without them
  // is refused rather than resumed into a model that may differ.
  std::vector<std::string> missing_buffers, bad_buffers;
  auto staged = io::st_detail::stage_buffers(f, model, "model.", io::BufferLoad::check, missing_buffers, bad_buffers,
                                             nullptr);
  if (!missing_buffers.empty() || !bad_buffers.empty())
    throw io_error(detail::cat("checkpoint '", path, "' does not match the model:",
                               missing_buffers.empty() ? "" : " missing: " + io::st_detail::join_names(missing_buffers) + ";",
                               bad_buffers.empty() ? "" : " " + io::st_detail::join_names(bad_buffers) + ";"));
  if (!m.empty() && m.size() != names.size())
    throw io_error(detail::cat("checkpoint '", path, "': optimizer state for ", m.size(), " of ", names.size(),
                               " parameters"));
  const long ema_tensors = long(ckpt_detail::number(meta, "ema.tensors", path));
  if (long(shadow.size()) != ema_tensors)
    throw io_error(detail::cat("checkpoint '", path, "': EMA state for ", shadow.size(), " parameters, the file says ",
                               ema_tensors));
  typename Tr::Counters c;
  c.step = long(ckpt_detail::number(meta, "step", path));
  c.skipped = long(ckpt_detail::number(meta, "skipped", path));
  c.consecutive_bad = long(ckpt_detail::number(meta, "consecutive_bad", path));
  const long opt_steps = long(ckpt_detail::number(meta, "optim.steps", path));
  const long ema_updates = long(ckpt_detail::number(meta, "ema.updates", path));
  std::map<std::string, Rng> restored;
  for (const auto& [k, r] : rngs)
    restored.emplace(k, Rng(ckpt_detail::number(meta, "rng." + k + ".seed", path),
                            ckpt_detail::number(meta, "rng." + k + ".counter", path)));
  // Commit (buffers that passed the check are equal or non-structural state such as ActNorm's flag).
  for (auto& [assign, vals] : staged) assign(vals);
  std::size_t i = 0;
  model.visit_parameters([&](const std::string&, auto& p) { p.value = from_host<B>(values[i++]); }, "");
  std::vector<Tensor<B>> tm, tv, ts;
  for (auto& x : m) tm.push_back(from_host<B>(x));
  for (auto& x : v) tv.push_back(from_host<B>(x));
  for (auto& x : shadow) ts.push_back(from_host<B>(x));
  trainer.optimizer().set_state(opt_steps, std::move(tm), std::move(tv), m.empty() ? std::vector<std::string>{} : names);
  trainer.ema().set_state(ema_updates, std::move(ts));
  trainer.set_counters(c);
  for (const auto& [k, r] : rngs) *r = restored.at(k);
  std::map<std::string, std::string> config;
  for (const auto& [k, val] : meta)
    if (k.rfind("config.", 0) == 0) config[k.substr(7)] = val;
  return config;
}

}  // namespace biflow
