// io/safetensors.hpp, io/npy.hpp, io/atomic_file.hpp, train/checkpoint.hpp, data/finite.hpp: round trips, dtype conversion, the
// strict loaders' errors, atomic replacement, exact resume.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <random>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "checkpoint_writer.hpp"
#include "helpers.hpp"

#include <biflow/data/csv.hpp>
#include <biflow/data/finite.hpp>
#include <biflow/io/npy.hpp>
#include <biflow/io/safetensors.hpp>
#include <biflow/train/checkpoint.hpp>

using namespace tests;

namespace {
std::string temp_file(const std::string& name) {
  return temp_path(name);
}
void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  const std::uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << data;
}
TarFlow<Cpu<float>> small_model(std::uint64_t seed) {
  TarFlowConfig cfg;
  cfg.image = {1, 4, 4, 2};
  cfg.width = 8;
  cfg.blocks = 2;
  cfg.layers = 1;
  cfg.heads = 2;
  cfg.num_classes = 2;
  Rng r(seed);
  TarFlow<Cpu<float>> m(cfg, r);
  randomize(m, seed + 1, 0.2);
  return m;
}
}  // namespace

TEST_CASE("safetensors round trip restores every parameter and the metadata") {
  auto a = small_model(1), b = small_model(7);
  const std::string path = temp_file("roundtrip.safetensors");
  io::save_safetensors(path, a, {{"model", "TarFlow"}, {"note", "quote \" and backslash \\"}});
  const auto meta = io::load_safetensors(path, b);
  CHECK(meta.at("model") == "TarFlow");
  CHECK(meta.at("note") == "quote \" and backslash \\");
  std::vector<HostMatrix<float>> va, vb;
  a.visit_parameters([&](const std::string&, auto& p) { va.push_back(to_host(p.value)); }, "");
  b.visit_parameters([&](const std::string&, auto& p) { vb.push_back(to_host(p.value)); }, "");
  REQUIRE(va.size() == vb.size());
  for (std::size_t i = 0; i < va.size(); ++i) CHECK(va[i] == vb[i]);
  // Biases are written 1-D, as torch stores them.
  const auto f = io::read_safetensors(path);
  CHECK(f.header.tensors.at("blocks.0.proj_in.bias").shape == std::vector<long>{8});
  CHECK(f.header.tensors.at("blocks.1.layers.0.attn.qkv.weight").shape == std::vector<long>{24, 8});
  std::remove(path.c_str());
}

TEST_CASE("safetensors reads F64, F16 and BF16 tensors, converting to float") {
  const std::string path = temp_file("dtypes.safetensors");
  std::string data;
  const double d[2] = {1.5, -2.25};
  data.append(reinterpret_cast<const char*>(d), 16);
  const std::uint16_t h[2] = {0x3C00, 0xC000};   // f16 1.0, -2.0
  data.append(reinterpret_cast<const char*>(h), 4);
  const std::uint16_t bf[2] = {0x3F80, 0x4040};  // bf16 1.0, 3.0
  data.append(reinterpret_cast<const char*>(bf), 4);
  write_raw(path,
            R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[2],)"
            R"("data_offsets":[16,20]},"c":{"dtype":"BF16","shape":[1,2],"data_offsets":[20,24]}})",
            data);
  const auto f = io::read_safetensors(path);
  CHECK(f.values("a") == std::vector<float>{1.5f, -2.25f});
  CHECK(f.values("b") == std::vector<float>{1.0f, -2.0f});
  CHECK(f.values("c") == std::vector<float>{1.0f, 3.0f});
  std::remove(path.c_str());
}

TEST_CASE("safetensors loader names the problem: truncation, bad JSON, offsets, overlap, dtype, keys, shapes") {
  const std::string path = temp_file("bad.safetensors");
  auto err = [&](const std::string& header, const std::string& data) {
    write_raw(path, header, data);
    return message<io_error>([&] { io::read_safetensors(path); });
  };
  CHECK(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", std::string(8, '\0')).find("expected '}'") !=
        std::string::npos);
  CHECK(err(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')).find("do not hold 3") !=
        std::string::npos);
  CHECK(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", std::string(8, '\0'))
            .find("inside the 8-byte data section") != std::string::npos);
  CHECK(err(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],)"
            R"("data_offsets":[4,8]}})",
            std::string(8, '\0'))
            .find("overlap") != std::string::npos);
  CHECK(err(R"({"a":{"dtype":"I16","shape":[1],"data_offsets":[0,2]}})", std::string(2, '\0')).find("dtype I16") !=
        std::string::npos);
  {
    std::ofstream f(path, std::ios::binary);
    const std::uint64_t n = 1u << 30;
    f.write(reinterpret_cast<const char*>(&n), 8);
  }
  CHECK(message<io_error>([&] { io::read_safetensors(path); }).find("header length") != std::string::npos);
  {
    std::ofstream f(path, std::ios::binary);
    f << "abc";
  }
  CHECK(message<io_error>([&] { io::read_safetensors(path); }).find("too short") != std::string::npos);
  // A file from another architecture: missing and unexpected names, wrong shapes — and the model is untouched.
  auto m = small_model(3);
  write_raw(path, R"({"blocks.0.proj_in.weight":{"dtype":"F32","shape":[3,3],"data_offsets":[0,36]},)"
                  R"("extra":{"dtype":"F32","shape":[1],"data_offsets":[36,40]}})",
            std::string(40, '\0'));
  const HostMatrix<float> before = to_host(m.block(0).proj_in.weight.value);
  const std::string msg = message<io_error>([&] { io::load_safetensors(path, m); });
  CHECK(msg.find("missing: blocks.0.proj_in.bias") != std::string::npos);
  CHECK(msg.find("wrong shape: blocks.0.proj_in.weight (file [3,3], model 8x4)") != std::string::npos);
  CHECK(msg.find("unexpected: extra") != std::string::npos);
  CHECK(to_host(m.block(0).proj_in.weight.value) == before);
  CHECK(message<io_error>([&] { io::read_safetensors(temp_file("does_not_exist")); }).find("cannot open") !=
        std::string::npos);
  std::remove(path.c_str());
}

// ---- npy ----------------------------------------------------------------------------------------------------

namespace {
void write_npy_raw(const std::string& path, const std::string& header, std::size_t data_bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const std::uint16_t n = static_cast<std::uint16_t>(header.size());
  f.write(reinterpret_cast<const char*>(&n), 2);
  f << header << std::string(data_bytes, '\0');
}
}  // namespace

TEST_CASE("npy round trip keeps values and an N x C x H x W shape reads as N rows of C*H*W") {
  const std::string path = temp_file("latents.npy");
  HostMatrix<float> m(3, 2 * 2 * 2);
  for (long i = 0; i < m.size(); ++i) m.data()[i] = float(i) * 0.5f - 3.0f;
  io::save_npy(path, m, {3, 2, 2, 2});
  const io::NpyArray a = io::read_npy(path);
  CHECK(a.shape == std::vector<long>{3, 2, 2, 2});
  CHECK(a.dtype == "<f4");
  CHECK(a.data.rows() == 3);
  CHECK(a.data.cols() == 8);
  CHECK(io::load_npy<float>(path) == m);
  HostMatrix<double> d = m.cast<double>() / 3.0;
  io::save_npy(path, d);
  CHECK(io::load_npy<double>(path) == d);
  CHECK(io::read_npy(path).dtype == "<f8");
  std::remove(path.c_str());
}

TEST_CASE("npy writes integer arrays: int64 labels and int32 matrices read back as integers") {
  const std::string path = temp_file("labels.npy");
  io::save_npy_labels(path, {3, 0, 9, 7});
  const io::NpyArray a = io::read_npy(path);
  CHECK(a.dtype == "<i8");
  CHECK(a.shape == std::vector<long>{4});
  CHECK(a.data.rows() == 4);
  CHECK(a.data(2, 0) == 9.0);
  CHECK(a.data(3, 0) == 7.0);
  HostMatrix<std::int32_t> m(2, 3);
  m << 1, -2, 3, 4, 5, -6;
  io::save_npy(path, m);
  const io::NpyArray b = io::read_npy(path);
  CHECK(b.dtype == "<i4");
  CHECK(b.data.cast<std::int32_t>() == m);
  std::remove(path.c_str());
}

TEST_CASE("a data set with NaN or Inf is refused before training, naming the first bad row and column") {
  const std::string path = temp_file("nan.npy");
  HostMatrix<float> m = HostMatrix<float>::Ones(5, 3);
  m(3, 2) = std::numeric_limits<float>::quiet_NaN();
  m(4, 0) = -std::numeric_limits<float>::infinity();
  io::save_npy(path, m);
  const HostMatrix<float> back = io::load_npy<float>(path);  // reading keeps the values: samples may be anything
  const std::string e = message<numeric_error>([&] { data::require_finite(back, "latents.npy"); });
  CHECK(e.find("latents.npy: non-finite value (nan) at row 3, column 2; 2 of 5 rows") != std::string::npos);
  CHECK(message<numeric_error>([&] { data::require_finite(HostMatrix<double>(m.cast<double>().bottomRows(1)), "x"); })
            .find("(-inf) at row 0, column 0") != std::string::npos);
  CHECK_NOTHROW(data::require_finite(HostMatrix<float>(m.topRows(3)), "x"));
  std::remove(path.c_str());
}

TEST_CASE("the parsers read from memory with the same checks as from files") {
  const std::string path = temp_file("mem.npy");
  HostMatrix<float> m(2, 3);
  m << 1, 2, 3, 4, 5, 6;
  io::save_npy(path, m);
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  CHECK(io::parse_npy(bytes).data.cast<float>() == m);
  CHECK(message<io_error>([&] { io::parse_npy(bytes.substr(0, bytes.size() - 1), "cut.npy"); })
            .find("needs 24 bytes of <f4 data, the file has 23") != std::string::npos);
  Rng rng(1);
  Linear<Cpu<float>> lin(3, 2, rng);
  const std::string st = temp_file("mem.safetensors");
  io::save_safetensors(st, lin, {{"k", "v"}});
  std::ifstream g(st, std::ios::binary);
  const std::string sb((std::istreambuf_iterator<char>(g)), {});
  const io::SafeTensorsFile sf = io::parse_safetensors(sb, "lin");
  CHECK(sf.header.metadata.at("k") == "v");
  CHECK(sf.matrix<float>("weight", 2, 3) == to_host(lin.weight.value));
  CHECK(message<io_error>([&] { io::parse_safetensors(sb.substr(0, 7), "lin"); }).find("too short") != std::string::npos);
  std::istringstream csv("a,b\n1,2\n3,x\n");
  CHECK(message<io_error>([&] { data::parse_csv(csv, "cells.csv"); }).find("'cells.csv' line 3 column 2: 'x' is not a number") !=
        std::string::npos);
  std::remove(path.c_str());
  std::remove(st.c_str());
}

TEST_CASE("npy integer arrays (labels as NumPy/PyTorch save them) read as their values") {
  const std::string path = temp_file("labels.npy");
  auto write = [&](const char* descr, const void* data, std::size_t bytes) {
    std::string h = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (3,), }";
    while ((10 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::ofstream f(path, std::ios::binary);
    f.write("\x93NUMPY\x01\x00", 8);
    const std::uint16_t n = static_cast<std::uint16_t>(h.size());
    f.write(reinterpret_cast<const char*>(&n), 2);
    f << h;
    f.write(static_cast<const char*>(data), std::streamsize(bytes));
  };
  const std::int64_t l64[3] = {0, 999, -2};
  const std::int32_t l32[3] = {7, 1, 3};
  const std::uint8_t l8[3] = {255, 0, 9};
  write("<i8", l64, sizeof l64);
  CHECK(io::read_npy(path).data == (HostMatrix<double>(3, 1) << 0, 999, -2).finished());
  write("<i4", l32, sizeof l32);
  CHECK(io::read_npy(path).data == (HostMatrix<double>(3, 1) << 7, 1, 3).finished());
  write("|u1", l8, sizeof l8);
  CHECK(io::read_npy(path).dtype == "|u1");
  CHECK(io::read_npy(path).data == (HostMatrix<double>(3, 1) << 255, 0, 9).finished());
  write("<i8", l64, sizeof l64 - 1);
  CHECK_THROWS_AS(io::read_npy(path), io_error);
  std::remove(path.c_str());
}

TEST_CASE("npy reader names the problem: magic, dtype, Fortran order, truncation, header") {
  const std::string path = temp_file("bad.npy");
  auto err = [&](const std::string& header, std::size_t bytes) {
    write_npy_raw(path, header, bytes);
    return message<io_error>([&] { io::read_npy(path); });
  };
  CHECK(err("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }\n", 16).find("dtype '<c8'") != std::string::npos);
  CHECK(err("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", 8).find("dtype '>f4'") != std::string::npos);
  CHECK(err("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", 16).find("Fortran") != std::string::npos);
  CHECK(err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 20).find("needs 24 bytes") !=
        std::string::npos);
  CHECK(err("{'descr': '<f4', 'fortran_order': False}\n", 0).find("no 'shape'") != std::string::npos);
  CHECK(err("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }\n", 8).find("malformed shape") !=
        std::string::npos);
  {
    std::ofstream f(path, std::ios::binary);
    f << "PK\x03\x04 this is a zip";
  }
  CHECK(message<io_error>([&] { io::read_npy(path); }).find("bad magic") != std::string::npos);
  {
    std::ofstream f(path, std::ios::binary);
    f.write("\x93NUMPY\x01\x00\xff\x7f{'descr'", 17);
  }
  CHECK(message<io_error>([&] { io::read_npy(path); }).find("past the end") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("an interrupted atomic write leaves the previous file intact and loadable") {
  const std::string path = temp_file("atomic.safetensors");
  auto m = small_model(5);
  io::save_safetensors(path, m);
  const auto before = io::read_safetensors(path).data;
  // The writer dies half-way (an exception stands in for a crash): the target is untouched.
  CHECK_THROWS_AS(io::write_atomically(path, [](std::ofstream& f) {
    f << "partial garbage";
    throw io_error("simulated crash");
  }), io_error);
  CHECK(io::read_safetensors(path).data == before);
  std::remove(path.c_str());
  std::remove((path + ".tmp").c_str());
}

// ---- checkpoints ----------------------------------------------------------------------------------------------

namespace {
using Nvp4 = Repeat<4, AffineCoupling<Cpu<float>>>;
Nvp4 nvp4() {
  Rng r(21);
  return Nvp4([&](std::size_t i) { return make_coupling<Cpu<float>>(masks::half(2, int(i % 2)), {16, 16}, r); });
}
TrainOptions ckpt_options() {
  TrainOptions o;
  o.total_steps = 40;
  o.warmup = 5;
  o.ema_decay = 0.99;
  o.weight_decay = 0.01;
  o.verbose = false;
  return o;
}
void train_steps(MleTrainer<Nvp4>& t, Rng& data, int n) {
  for (int s = 0; s < n; ++s) t.step(from_host<Cpu<float>>(data::toy("moons", 64, data).cast<float>()));
}
std::vector<HostMatrix<float>> params_of(Nvp4& f) {
  std::vector<HostMatrix<float>> v;
  f.visit_parameters([&](const std::string&, auto& p) { v.push_back(to_host(p.value)); }, "");
  return v;
}
}  // namespace

TEST_CASE("resuming from a checkpoint reproduces the uninterrupted run bit for bit (parameters, EMA, RNG)") {
  const std::string path = temp_file("resume.ckpt");
  // Uninterrupted: 20 steps.
  auto fa = nvp4();
  MleTrainer<Nvp4> ta(fa, ckpt_options());
  Rng da(7);
  train_steps(ta, da, 20);
  // Interrupted: 12 steps, checkpoint, fresh objects, load, 8 more.
  {
    auto fb = nvp4();
    MleTrainer<Nvp4> tb(fb, ckpt_options());
    Rng db(7);
    train_steps(tb, db, 12);
    save_checkpoint(path, fb, tb, {{"data", &db}}, {{"model", "realnvp"}});
  }
  auto fc = nvp4();
  MleTrainer<Nvp4> tc(fc, ckpt_options());
  Rng dc(999);
  const auto config = load_checkpoint(path, fc, tc, {{"data", &dc}});
  CHECK(config.at("model") == "realnvp");
  CHECK(tc.steps() == 12);
  CHECK(dc.seed() == 7);
  train_steps(tc, dc, 8);
  CHECK(params_of(fc) == params_of(fa));
  ta.ema().swap(fa);
  tc.ema().swap(fc);
  CHECK(params_of(fc) == params_of(fa));
  std::remove(path.c_str());
}

TEST_CASE("killing a training run at random moments, also mid-checkpoint-write, never leaves an unreadable checkpoint "
          "(F by maximum likelihood, and G against a frozen F)") {
  for (const std::string mode : {"flow", "reverse"}) {
  CAPTURE(mode);
  // tests/checkpoint_writer.cpp resumes from the checkpoint, then trains and checkpoints after every step,
  // printing 'S' as a write starts and 'D' when it is done. Even rounds SIGKILL it at a random moment; odd rounds
  // wait for a write to start and kill it 0-0.3 ms later, inside the write. After every kill the checkpoint on
  // disk must load completely, and the run must never go back.
  const std::string path = temp_file("killed_" + mode + ".ckpt");
  std::remove(path.c_str());
  std::remove((path + ".tmp").c_str());
  std::mt19937 gen(20261124);
  long last_step = 0, loads = 0, mid_write = 0;
  for (int round = 0; round < 12; ++round) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      if (mode == "reverse")
        execl(BIFLOW_CHECKPOINT_WRITER, BIFLOW_CHECKPOINT_WRITER, path.c_str(), "reverse", static_cast<char*>(nullptr));
      else
        execl(BIFLOW_CHECKPOINT_WRITER, BIFLOW_CHECKPOINT_WRITER, path.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    char last = 0, c = 0;
    if (round % 2 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 600)(gen)));
    } else {
      for (int starts = std::uniform_int_distribution<int>(1, 3)(gen); starts > 0 && read(fds[0], &c, 1) == 1;)
        if (c == 'S') --starts;
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 300)(gen)));
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    while (read(fds[0], &c, 1) == 1) last = c;  // the writer's last word: 'S' = killed inside a write
    close(fds[0]);
    if (round % 2 == 1 && last == 0) last = 'S';  // nothing after the 'S' the test waited for
    mid_write += last == 'S';
    INFO("round ", round, ": the writer ", WIFEXITED(status) ? "exited with " : "was killed by signal ",
         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    CHECK(WIFSIGNALED(status));  // still running when killed: it loaded the previous round's checkpoint
    if (!std::filesystem::exists(path)) continue;  // killed before its first checkpoint
    Rng init(1);  // F as the writer built it (its buffers must match)
    TarFlow<Cpu<float>> flow(checkpoint_writer_config(), init);
    Rng data(0);
    long steps = 0;
    if (mode == "reverse") {
      const ReverseConfig rc = checkpoint_writer_reverse_config();
      ReverseModel<Cpu<float>> g(rc, init);
      HiddenAlignment<Cpu<float>> heads(rc, init);
      ReverseTrainer<TarFlow<Cpu<float>>, ReverseModel<Cpu<float>>, HiddenAlignment<Cpu<float>>> trainer(
          flow, g, heads, ReverseTrainOptions{});
      const auto config = load_checkpoint(path, trainer.trainable(), trainer, {{"data", &data}});
      CHECK(config.at("writer") == "checkpoint_writer reverse");
      steps = trainer.steps();
    } else {
      MleTrainer<TarFlow<Cpu<float>>> trainer(flow, TrainOptions{});
      const auto config = load_checkpoint(path, flow, trainer, {{"data", &data}});
      CHECK(config.at("writer") == "checkpoint_writer");
      steps = trainer.steps();
    }
    CHECK(steps >= last_step);  // progress is never lost
    last_step = steps;
    ++loads;
  }
  MESSAGE("12 kills, ", mid_write, " inside a checkpoint write; the checkpoint loaded ", loads,
          " times; the run reached step ", last_step);
  CHECK(mid_write >= 3);
  CHECK(loads >= 10);
  CHECK(last_step > 0);
  std::remove(path.c_str());
  std::remove((path + ".tmp").c_str());
  }
}

TEST_CASE("a checkpoint of another model or a plain weights file is refused, naming why, and changes nothing") {
  const std::string path = temp_file("other.ckpt");
  auto f = nvp4();
  MleTrainer<Nvp4> t(f, ckpt_options());
  io::save_safetensors(path, f);
  const auto before = params_of(f);
  CHECK(message<io_error>([&] { load_checkpoint(path, f, t); }).find("not a biflow checkpoint") != std::string::npos);
  auto m = small_model(1);
  MleTrainer<TarFlow<Cpu<float>>> tm(m, ckpt_options());
  save_checkpoint(path, m, tm);
  CHECK(message<io_error>([&] { load_checkpoint(path, f, t); }).find("no tensor 'model.0.net.0.weight'") !=
        std::string::npos);
  CHECK(params_of(f) == before);
  std::remove(path.c_str());
}

namespace {
using PermFlow = Sequential<Permutation<Cpu<double>>, AffineCoupling<Cpu<double>>, ActNorm<Cpu<double>>>;
PermFlow perm_flow(std::uint64_t seed) {
  Rng r(seed);
  auto c = make_coupling<Cpu<double>>(masks::half(5, 0), {8}, r);
  randomize(c, 3);  // the same weights whatever the seed: only the permutation differs
  return PermFlow(Permutation<Cpu<double>>::random(5, r), std::move(c), ActNorm<Cpu<double>>(5));
}
}  // namespace

TEST_CASE("buffers are saved with the flow: a random permutation reloaded into a flow built with another seed is "
          "refused naming the buffer, and BufferLoad::take restores the density") {
  const std::string path = temp_file("perm.safetensors");
  const auto x = randn<Cpu<double>>(6, 5, 9);
  PermFlow a = perm_flow(1);
  layer<2>(a).data_init(layer<1>(a).forward(layer<0>(a).forward(x).y).y);
  io::save_safetensors(path, a);
  const auto f = io::read_safetensors(path);
  CHECK(f.header.tensors.at("0.permutation").dtype == "I64");
  CHECK(f.header.tensors.at("1.mask").dtype == "F64");
  CHECK(f.header.tensors.at("2.initialized").dtype == "BOOL");
  PermFlow b = perm_flow(2);
  const auto perm_b = layer<0>(b).indices();
  REQUIRE(perm_b != layer<0>(a).indices());
  const std::string msg = message<io_error>([&] { io::load_safetensors(path, b); });
  CHECK(msg.find("0.permutation (buffer differs") != std::string::npos);
  CHECK(msg.find("another seed") != std::string::npos);
  CHECK(layer<0>(b).indices() == perm_b);  // refused: nothing changed
  CHECK_FALSE(layer<2>(b).initialized());
  io::load_safetensors(path, b, io::BufferLoad::take);
  CHECK(layer<0>(b).indices() == layer<0>(a).indices());
  CHECK(layer<2>(b).initialized());  // state buffers always load
  CHECK(to_host(log_prob(b, x)) == to_host(log_prob(a, x)));
  // A flow built with the same seed loads under the default check.
  PermFlow c = perm_flow(1);
  io::load_safetensors(path, c);
  CHECK(to_host(log_prob(c, x)) == to_host(log_prob(a, x)));
  // A 0.2-style file without buffers is refused, naming the missing ones.
  std::vector<io::TensorBlob> params;
  a.visit_parameters([&](const std::string& n, auto& p) { params.push_back(io::blob(n, to_host(p.value))); }, "");
  io::write_safetensors(path, params);
  const std::string old = message<io_error>([&] { io::load_safetensors(path, c); });
  CHECK(old.find("missing: 0.permutation (buffer), 1.mask (buffer), 2.initialized (buffer)") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("checkpoints carry buffers: resuming into a flow with another permutation is refused, naming it") {
  const std::string path = temp_file("perm.ckpt");
  PermFlow a = perm_flow(1), b = perm_flow(2);
  TrainOptions o;
  o.verbose = false;
  MleTrainer<PermFlow> ta(a, o), tb(b, o);
  save_checkpoint(path, a, ta);
  CHECK(io::read_safetensors(path).has("model.0.permutation"));
  const std::string msg = message<io_error>([&] { load_checkpoint(path, b, tb); });
  CHECK(msg.find("model.0.permutation (buffer differs") != std::string::npos);
  PermFlow c = perm_flow(1);
  MleTrainer<PermFlow> tc(c, o);
  load_checkpoint(path, c, tc);
  std::remove(path.c_str());
}

TEST_CASE("TarFlow's buffers are its patchify permutation and each block's token order") {
  auto m = small_model(1);
  std::vector<std::string> names;
  visit_buffers_of(m, [&](const std::string& n, const Buffer&) { names.push_back(n); }, "");
  CHECK(names == std::vector<std::string>{"patchify.permutation", "blocks.0.order", "blocks.1.order"});
  // A loaded order is installed through set_order: a reversed block 0 changes the density.
  const std::string path = temp_file("order.safetensors");
  auto r = small_model(1);
  r.block(0).set_order(TarBlock<Cpu<float>>::reversed_order(r.config().image.tokens()));
  io::save_safetensors(path, r);
  CHECK(message<io_error>([&] { io::load_safetensors(path, m); }).find("blocks.0.order (buffer differs") !=
        std::string::npos);
  io::load_safetensors(path, m, io::BufferLoad::take);
  CHECK(m.block(0).order() == r.block(0).order());
  std::remove(path.c_str());
}

TEST_CASE("Standardize's fitted statistics are saved and restored with the flow (a fresh, unfitted flow loads them)") {
  using D = Cpu<double>;
  const std::string path = temp_file("standardize.safetensors");
  HostMatrix<double> xh = to_host(randn<D>(50, 3, 70));
  xh.col(0).array() = 4 + 2 * xh.col(0).array();
  const auto x = from_host<D>(xh);
  Rng rng(71);
  auto c = make_coupling<D>(masks::half(3, 0), {5}, rng);
  randomize(c, 72);
  using Flow = Sequential<Standardize<D>, decltype(c)>;
  Flow a(Standardize<D>(3), c);
  a.data_init(x);
  REQUIRE(layer<0>(a).fitted());
  io::save_safetensors(path, a);
  CHECK(io::read_safetensors(path).header.tensors.at("0.mean").dtype == "F64");
  Flow b(Standardize<D>(3), c);
  CHECK((to_host(log_prob(b, x)) - to_host(log_prob(a, x))).cwiseAbs().maxCoeff() > 0.1);  // unfitted: identity
  io::load_safetensors(path, b);
  CHECK(layer<0>(b).fitted());
  CHECK(to_host(log_prob(b, x)) == to_host(log_prob(a, x)));
  std::remove(path.c_str());
}
