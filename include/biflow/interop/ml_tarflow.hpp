#pragma once
// Checkpoints of Apple's public PyTorch TARFlow ("ml-tarflow", Zhai et al. 2024) in biflow's TarFlow.
// Convert the .pth once in Python (safetensors.torch.save_file(model.state_dict(), "f.safetensors")), then
//   auto f = io::read_safetensors("f.safetensors");
//   TarFlow<Cpu<float>> flow(interop::ml_tarflow_config(f, {3, 64, 64, 4}, /*heads=*/heads), rng);
//   interop::import_ml_tarflow(f, flow);
// The architectures agree layer for layer (docs/interop.md has the full table); what differs is naming:
//   blocks.i.attn_blocks.k.attention.{norm,qkv,proj}  -> blocks.i.layers.k.{attn_norm, attn.qkv, attn.proj}
//   blocks.i.attn_blocks.k.mlp.{norm, main.0, main.2} -> blocks.i.layers.k.{mlp_norm, mlp.0, mlp.2}
//   blocks.i.class_embed (classes x 1 x C)            -> blocks.i.class_embed.weight ((classes + 1) x C): biflow's
//                                                        null-label row is the mean of the class rows, which is
//                                                        what ml-tarflow uses when no label is given
// and the patch order, which is ml-tarflow's F.unfold order: PatchOrder::channel_major. Buffers (attn_mask, a
// prior `var` of ones) are checked and skipped. ml-tarflow reports the log-det as a mean over dimensions; biflow
// reports the sum (multiply theirs by L·D to compare).
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "../models/tarflow.hpp"
#include "../io/safetensors.hpp"

namespace biflow::interop {

using io::SafeTensorsFile;
namespace st_detail = io::st_detail;

namespace mlt_detail {
inline std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == '.')
      out.emplace_back();
    else
      out.back().push_back(c);
  }
  return out;
}
inline std::string join(const std::vector<std::string>& v, std::size_t from) {
  std::string s;
  for (std::size_t i = from; i < v.size(); ++i) s += (i > from ? "." : "") + v[i];
  return s;
}
inline long count_indexed(const SafeTensorsFile& f, const std::string& head, const std::string& tail) {
  long n = 0;
  while (f.has(head + std::to_string(n) + tail)) ++n;
  return n;
}
inline const st_detail::Entry& entry(const SafeTensorsFile& f, const std::string& name, std::size_t rank) {
  const auto it = f.header.tensors.find(name);
  if (it == f.header.tensors.end())
    throw io_error(detail::cat("ml-tarflow checkpoint '", f.path, "': tensor '", name, "' is missing"));
  if (it->second.shape.size() != rank)
    throw io_error(detail::cat("ml-tarflow checkpoint '", f.path, "': tensor '", name, "' has rank ",
                               it->second.shape.size(), ", expected ", rank));
  return it->second;
}
}  // namespace mlt_detail

/// The ml-tarflow state_dict name of a biflow TarFlow parameter ("blocks.0.layers.1.attn.qkv.weight" ->
/// "blocks.0.attn_blocks.1.attention.qkv.weight").
inline std::string ml_tarflow_name(const std::string& biflow_name) {
  const std::vector<std::string> p = mlt_detail::split(biflow_name);
  if (p.size() < 3 || p[0] != "blocks") throw usage_error("ml_tarflow_name: '" + biflow_name + "' is not a TarFlow parameter");
  const std::string head = "blocks." + p[1] + ".";
  if (p[2] == "class_embed") return head + "class_embed";
  if (p[2] != "layers" || p.size() < 6) return biflow_name;
  const std::string layer = head + "attn_blocks." + p[3] + ".";
  if (p[4] == "attn_norm") return layer + "attention.norm." + mlt_detail::join(p, 5);
  if (p[4] == "attn") return layer + "attention." + mlt_detail::join(p, 5);
  if (p[4] == "mlp_norm") return layer + "mlp.norm." + mlt_detail::join(p, 5);
  if (p[4] == "mlp") return layer + "mlp.main." + mlt_detail::join(p, 5);
  throw usage_error("ml_tarflow_name: '" + biflow_name + "' is not a TarFlow parameter");
}

/// The TarFlowConfig of an ml-tarflow checkpoint, read off its tensor shapes. The image shape and the number of
/// heads are not stored in the weights: pass them (ml-tarflow: heads = channels / head_dim) and they are checked
/// against the checkpoint. `prefix` is prepended to every name (e.g. "module." for DDP checkpoints).
inline TarFlowConfig ml_tarflow_config(const SafeTensorsFile& f, ImageShape image, long heads,
                                       const std::string& prefix = "") {
  image.validate();
  image.order = PatchOrder::channel_major;
  TarFlowConfig c;
  c.image = image;
  c.blocks = mlt_detail::count_indexed(f, prefix + "blocks.", ".proj_in.weight");
  if (c.blocks == 0)
    throw io_error(detail::cat("ml-tarflow checkpoint '", f.path, "': no tensor '", prefix,
                               "blocks.0.proj_in.weight'; is this a TARFlow state_dict (or does it need a prefix)?"));
  const std::string b0 = prefix + "blocks.0.";
  const auto& in = mlt_detail::entry(f, b0 + "proj_in.weight", 2);
  c.width = in.shape[0];
  if (in.shape[1] != image.token_dim())
    throw io_error(detail::cat("ml-tarflow checkpoint '", f.path, "': tokens hold ", in.shape[1],
                               " values, but the image shape C=", image.channels, ", patch ", image.patch, " gives ",
                               image.token_dim()));
  const auto& pos = mlt_detail::entry(f, b0 + "pos_embed", 2);
  if (pos.shape[0] != image.tokens())
    throw io_error(detail::cat("ml-tarflow checkpoint '", f.path, "': ", pos.shape[0], " positions, but a ",
                               image.height, "x", image.width, " image in patches of ", image.patch, " has ",
                               image.tokens(), " tokens"));
  c.layers = mlt_detail::count_indexed(f, b0 + "attn_blocks.", ".attention.qkv.weight");
  if (c.layers == 0) throw io_error(detail::cat("ml-tarflow checkpoint '", f.path, "': block 0 has no attention layers"));
  c.mlp_ratio = double(mlt_detail::entry(f, b0 + "attn_blocks.0.mlp.main.0.weight", 2).shape[0]) / double(c.width);
  c.num_classes = f.has(b0 + "class_embed") ? mlt_detail::entry(f, b0 + "class_embed", 3).shape[0] : 0;
  if (heads <= 0 || c.width % heads != 0)
    throw usage_error(detail::cat("ml_tarflow_config: width ", c.width, " is not divisible by ", heads, " heads"));
  c.heads = heads;
  return c;
}

/// Loads an ml-tarflow checkpoint into m (built with ml_tarflow_config or an equal config). All or nothing:
/// missing, unexpected, wrongly shaped or non-finite tensors are an io_error naming them, and m is unchanged.
template <Backend B>
void import_ml_tarflow(const SafeTensorsFile& f, TarFlow<B>& m, const std::string& prefix = "") {
  using T = typename B::scalar;
  const TarFlowConfig& cfg = m.config();
  if (cfg.image.order != PatchOrder::channel_major)
    throw usage_error("import_ml_tarflow: ml-tarflow patchifies channel-major (F.unfold); the model uses channel_last");
  if (cfg.alpha_clamp > 0)
    throw usage_error(detail::cat("import_ml_tarflow: ml-tarflow has no soft clamp on alpha; the model's alpha_clamp is ",
                                  cfg.alpha_clamp));
  std::set<std::string> used;
  std::vector<std::string> problems;
  std::vector<HostMatrix<T>> values;
  m.visit_parameters([&](const std::string& name, auto& p) {
    const std::string src = prefix + ml_tarflow_name(name);
    const long rows = p.value.rows(), cols = p.value.cols();
    const auto it = f.header.tensors.find(src);
    if (it == f.header.tensors.end()) return problems.push_back("missing " + src);
    used.insert(src);
    const std::vector<long>& s = it->second.shape;
    long n = 1;
    for (long d : s) n *= d;
    const bool class_rows = name.size() > 18 && name.ends_with("class_embed.weight");
    const long want = class_rows ? (rows - 1) * cols : rows * cols;
    if (n != want || (class_rows && (s.size() != 3 || s[2] != cols))) {
      std::string shape = "[";
      for (std::size_t i = 0; i < s.size(); ++i) shape += (i ? "," : "") + std::to_string(s[i]);
      return problems.push_back(detail::cat("wrong shape ", src, " (file ", shape, "], expected ",
                                            class_rows ? detail::cat("[", rows - 1, ",1,", cols, "]")
                                                       : detail::cat(rows, "x", cols),
                                            ")"));
    }
    HostMatrix<T> v(rows, cols);
    const std::vector<T> raw = f.template values<T>(src);
    std::copy(raw.begin(), raw.end(), v.data());
    if (class_rows) v.row(rows - 1) = v.topRows(rows - 1).colwise().mean();  // the null label = "no label"
    for (long i = 0; i < long(raw.size()); ++i)
      if (!std::isfinite(double(raw[std::size_t(i)]))) {
        problems.push_back(detail::cat("non-finite value in ", src, " at flat index ", i));
        break;
      }
    values.push_back(std::move(v));
  }, "");
  for (const auto& [name, e] : f.header.tensors) {
    if (used.count(name) || name.compare(0, prefix.size(), prefix) != 0) continue;
    if (name.ends_with(".attn_mask")) continue;  // a constant causal mask buffer
    if (name == prefix + "var") {              // the prior's variance: ones unless trained ("VP" mode)
      for (double v : f.template values<double>(name))
        if (v != 1.0) {
          problems.push_back(name + " is not all ones (a learned prior variance; biflow's prior is N(0, I))");
          break;
        }
      continue;
    }
    problems.push_back("unexpected " + name);
  }
  if (!problems.empty()) {
    std::string s;
    for (std::size_t i = 0; i < problems.size() && i < 8; ++i) s += (i ? "; " : "") + problems[i];
    if (problems.size() > 8) s += detail::cat("; ... (", problems.size(), " problems in all)");
    throw io_error(detail::cat("ml-tarflow checkpoint '", f.path, "' does not match the model: ", s));
  }
  std::size_t i = 0;
  m.visit_parameters([&](const std::string&, auto& p) { p.value = from_host<B>(values[i++]); }, "");
}

}  // namespace biflow::interop
