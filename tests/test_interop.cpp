// interop/ml_tarflow.hpp against PyTorch: tests/data/interop/ holds a small class-conditional TARFlow written in
// PyTorch with the module names of Apple's public ml-tarflow (benchmarks/reference/tarflow_interop.py), its
// weights, and inputs with the outputs PyTorch computed (float64). biflow must load the checkpoint by name and
// reproduce z, the log-det and the exact inverse.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "helpers.hpp"

#include <biflow/interop/ml_tarflow.hpp>

using namespace tests;

namespace {
const std::string kDir = std::string(BIFLOW_SOURCE_DIR) + "/tests/data/interop/";
const std::string kWeights = kDir + "ml_tarflow_small.safetensors";
const ImageShape kImage{2, 8, 8, 2, PatchOrder::channel_major};

template <class T>
Tensor<Cpu<T>> tensor(const io::SafeTensorsFile& f, const std::string& name, long cols) {
  const long n = long(f.values<T>(name).size());
  return from_host<Cpu<T>>(f.matrix<T>(name, n / cols, cols));
}
/// One-hot context rows for labels (column `classes` = the null label when a label is -1).
template <class T>
Tensor<Cpu<T>> context(const std::vector<double>& labels, long classes) {
  HostMatrix<T> c = HostMatrix<T>::Zero(long(labels.size()), classes + 1);
  for (std::size_t i = 0; i < labels.size(); ++i) c(long(i), labels[i] < 0 ? classes : long(labels[i])) = T(1);
  return from_host<Cpu<T>>(c);
}
double max_abs(const HostMatrix<double>& a) { return a.cwiseAbs().maxCoeff(); }

template <class T>
void check_against_pytorch(double tol) {
  const io::SafeTensorsFile w = io::read_safetensors(kWeights), ref = io::read_safetensors(kDir + "ml_tarflow_small_io.safetensors");
  const TarFlowConfig cfg = interop::ml_tarflow_config(w, kImage, 2);
  CHECK(cfg.blocks == 3);
  CHECK(cfg.layers == 2);
  CHECK(cfg.width == 16);
  CHECK(cfg.num_classes == 3);
  CHECK(cfg.mlp_ratio == 4.0);
  Rng rng(1);
  TarFlow<Cpu<T>> flow(cfg, rng);
  interop::import_ml_tarflow(w, flow);

  const long F = kImage.features(), classes = cfg.num_classes;
  const Tensor<Cpu<T>> x = tensor<T>(ref, "x", F);
  const std::vector<double> y = ref.values<double>("y"), ys = ref.values<double>("noise_labels");
  auto cast = [](const Tensor<Cpu<T>>& t) { return HostMatrix<double>(to_host(t).template cast<double>()); };
  auto expect = [&](const std::string& name, long cols) { return ref.matrix<double>(name, long(ref.values<double>(name).size()) / cols, cols); };

  typename TarFlow<Cpu<T>>::Context ctx;
  const Tensor<Cpu<T>> cy = context<T>(y, classes), cn = context<T>(std::vector<double>(y.size(), -1), classes);
  const FlowOut<Cpu<T>> fw = flow.forward(x, ctx, cy);
  // No label: ml-tarflow adds the mean class embedding, biflow the null-label row set to that mean.
  const FlowOut<Cpu<T>> fu = flow.forward(x, ctx, cn);
  // The exact inverse (biflow: KV-cached decoding; PyTorch: uncached token-by-token) of the same noise.
  const Tensor<Cpu<T>> z = tensor<T>(ref, "noise", F);
  const double ez = max_abs(cast(fw.y) - expect("z", F)), eld = max_abs(cast(fw.logdet) - expect("logdet", 1)),
               ezu = max_abs(cast(fu.y) - expect("z_uncond", F)),
               eldu = max_abs(cast(fu.logdet) - expect("logdet_uncond", 1)),
               es = max_abs(cast(flow.inverse(z, context<T>(ys, classes)).y) - expect("samples", F)),
               esu = max_abs(cast(flow.inverse(z, context<T>(std::vector<double>(ys.size(), -1), classes)).y) -
                             expect("samples_uncond", F));
  INFO("max |error|: z ", ez, ", log-det ", eld, ", z (no label) ", ezu, ", log-det (no label) ", eldu,
       ", inverse ", es, ", inverse (no label) ", esu);
  CHECK(ez < tol);
  CHECK(eld < tol * 10);
  CHECK(ezu < tol);
  CHECK(eldu < tol * 10);
  CHECK(es < tol);
  CHECK(esu < tol);
  // The reference really depends on the label (the no-label check is not vacuous).
  CHECK(max_abs(expect("z", F) - expect("z_uncond", F)) > 1e-2);
  MESSAGE("biflow vs PyTorch, max |error|: z ", ez, ", log-det ", eld, ", inverse ", es);
}

/// Copies the checkpoint with its header rewritten by `edit` (data unchanged).
std::string edited_copy(const std::string& name, const std::function<void(std::string&)>& edit) {
  std::ifstream in(kWeights, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string header = bytes.substr(8, n), data = bytes.substr(8 + n);
  edit(header);
  header.resize(((header.size() + 7) / 8) * 8, ' ');
  n = header.size();
  const std::string path = tests::temp_path("interop_" + name);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
  return path;
}
void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}
}  // namespace

TEST_CASE("a PyTorch (ml-tarflow) TARFlow checkpoint loads by name and reproduces z, log-det and inverse in double") {
  check_against_pytorch<double>(1e-9);
}

TEST_CASE("the same checkpoint in a float model agrees with PyTorch to float rounding") {
  check_against_pytorch<float>(2e-4);
}

TEST_CASE("ml-tarflow names map to biflow names and back for every parameter of a TarFlow") {
  CHECK(interop::ml_tarflow_name("blocks.2.layers.1.attn.qkv.weight") == "blocks.2.attn_blocks.1.attention.qkv.weight");
  CHECK(interop::ml_tarflow_name("blocks.0.layers.0.attn_norm.bias") == "blocks.0.attn_blocks.0.attention.norm.bias");
  CHECK(interop::ml_tarflow_name("blocks.0.layers.3.mlp_norm.weight") == "blocks.0.attn_blocks.3.mlp.norm.weight");
  CHECK(interop::ml_tarflow_name("blocks.1.layers.0.mlp.2.bias") == "blocks.1.attn_blocks.0.mlp.main.2.bias");
  CHECK(interop::ml_tarflow_name("blocks.1.class_embed.weight") == "blocks.1.class_embed");
  CHECK(interop::ml_tarflow_name("blocks.1.pos_embed") == "blocks.1.pos_embed");
  CHECK(interop::ml_tarflow_name("blocks.1.proj_out.weight") == "blocks.1.proj_out.weight");
  CHECK(message<usage_error>([] { interop::ml_tarflow_name("net.0.weight"); }).find("not a TarFlow parameter") !=
        std::string::npos);
}

TEST_CASE("a mismatching ml-tarflow checkpoint is refused, naming the tensor, and leaves the model unchanged") {
  const io::SafeTensorsFile w = io::read_safetensors(kWeights);
  Rng rng(3);
  SUBCASE("wrong image shape for the checkpoint") {
    CHECK(message<io_error>([&] { interop::ml_tarflow_config(w, {1, 8, 8, 2}, 2); }).find("tokens hold 8 values") !=
          std::string::npos);
    CHECK(message<io_error>([&] { interop::ml_tarflow_config(w, {2, 16, 16, 2}, 2); }).find("64 tokens") != std::string::npos);
    CHECK(message<usage_error>([&] { interop::ml_tarflow_config(w, kImage, 3); }).find("not divisible by 3 heads") !=
          std::string::npos);
  }
  SUBCASE("a model with more layers reports the missing tensors; one with fewer the unexpected ones") {
    TarFlowConfig c = interop::ml_tarflow_config(w, kImage, 2);
    c.layers = 3;
    TarFlow<Cpu<float>> deeper(c, rng);
    const HostMatrix<float> before = to_host(deeper.block(0).proj_in.weight.value);
    const std::string e = message<io_error>([&] { interop::import_ml_tarflow(w, deeper); });
    CHECK(e.find("missing blocks.0.attn_blocks.2.attention.norm.weight") != std::string::npos);
    CHECK(to_host(deeper.block(0).proj_in.weight.value) == before);
    c.layers = 1;
    TarFlow<Cpu<float>> shallow(c, rng);
    CHECK(message<io_error>([&] { interop::import_ml_tarflow(w, shallow); }).find("unexpected blocks.0.attn_blocks.1.") !=
          std::string::npos);
  }
  SUBCASE("a wrong class count is a shape error naming class_embed") {
    TarFlowConfig c = interop::ml_tarflow_config(w, kImage, 2);
    c.num_classes = 5;
    TarFlow<Cpu<float>> m(c, rng);
    CHECK(message<io_error>([&] { interop::import_ml_tarflow(w, m); }).find("wrong shape blocks.0.class_embed (file [3,1,16]") !=
          std::string::npos);
  }
  SUBCASE("settings ml-tarflow does not have are usage errors") {
    TarFlowConfig c = interop::ml_tarflow_config(w, kImage, 2);
    c.alpha_clamp = 4;
    TarFlow<Cpu<float>> clamped(c, rng);
    CHECK(message<usage_error>([&] { interop::import_ml_tarflow(w, clamped); }).find("no soft clamp") != std::string::npos);
    c.alpha_clamp = 0;
    c.image.order = PatchOrder::channel_last;
    TarFlow<Cpu<float>> last(c, rng);
    CHECK(message<usage_error>([&] { interop::import_ml_tarflow(w, last); }).find("channel-major") != std::string::npos);
  }
  SUBCASE("a DDP prefix is accepted when given and reported when not") {
    const std::string path = edited_copy("prefixed", [](std::string& h) {
      replace_all(h, "\"blocks.", "\"module.blocks.");
      replace_all(h, "\"var\"", "\"module.var\"");
    });
    const io::SafeTensorsFile p = io::read_safetensors(path);
    CHECK(message<io_error>([&] { interop::ml_tarflow_config(p, kImage, 2); }).find("need a prefix") != std::string::npos);
    TarFlow<Cpu<double>> m(interop::ml_tarflow_config(p, kImage, 2, "module."), rng);
    interop::import_ml_tarflow(p, m, "module.");
    std::filesystem::remove(path);
  }
}

TEST_CASE("a checkpoint with NaN weights is refused, naming the tensor and the index") {
  // Rewrite the first value of the first block's pos_embed to NaN in a copy.
  const io::SafeTensorsFile w = io::read_safetensors(kWeights);
  const auto& e = w.header.tensors.at("blocks.0.pos_embed");
  const std::string path = edited_copy("nan", [](std::string&) {});
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    std::uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    f.seekp(std::streamoff(8 + n + e.begin + 4 * 5));
    f.write(reinterpret_cast<const char*>(&nan), 4);
  }
  Rng rng(2);
  const io::SafeTensorsFile bad = io::read_safetensors(path);
  TarFlow<Cpu<float>> m(interop::ml_tarflow_config(bad, kImage, 2), rng);
  CHECK(message<io_error>([&] { interop::import_ml_tarflow(bad, m); }).find("non-finite value in blocks.0.pos_embed at flat index 5") !=
        std::string::npos);
  std::filesystem::remove(path);
}
