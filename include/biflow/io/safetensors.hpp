#pragma once
// safetensors (https://huggingface.co/docs/safetensors): the weight format PyTorch users exchange.
//   8-byte little-endian header length N | N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__":
//   {string: string}} | raw little-endian tensor data.
// biflow writes F32 with PyTorch-style names (a 1 x n parameter is written with shape [n], as torch biases are)
// and reads F32/F64/F16/BF16, converting. The reader is strict: header size, JSON syntax, dtypes, offsets in
// range and non-overlapping, shapes against the model, and missing/unexpected names are all reported as
// io_error naming the problem; a bad file never crashes and never half-loads a model.
#include <algorithm>
#include <cctype>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../backend/ops.hpp"
#include "../core/buffer.hpp"
#include "atomic_file.hpp"

namespace biflow::io {

namespace st_detail {
struct Entry {
  std::string dtype;
  std::vector<long> shape;
  std::uint64_t begin = 0, end = 0;
};
struct Header {
  std::map<std::string, Entry> tensors;
  std::map<std::string, std::string> metadata;
};

/// Minimal strict JSON reader for the safetensors header (objects, strings, integer arrays).
class Parser {
 public:
  Parser(const std::string& s, const std::string& file) : s_(s), file_(file) {}
  Header parse() {
    Header h;
    expect('{');
    if (peek() != '}') {
      do {
        const std::string key = string();
        expect(':');
        if (key == "__metadata__") {
          expect('{');
          if (peek() != '}') {
            do {
              const std::string k = string();
              expect(':');
              h.metadata[k] = string();
            } while (accept(','));
          }
          expect('}');
        } else {
          if (h.tensors.count(key)) fail("tensor '" + key + "' appears twice");
          h.tensors[key] = entry(key);
        }
      } while (accept(','));
    }
    expect('}');
    ws();
    if (i_ != s_.size()) fail("trailing characters after the header object");
    return h;
  }

 private:
  Entry entry(const std::string& name) {
    Entry e;
    bool has_dtype = false, has_shape = false, has_off = false;
    expect('{');
    do {
      const std::string k = string();
      expect(':');
      if (k == "dtype") e.dtype = string(), has_dtype = true;
      else if (k == "shape") {
        for (auto v : ints()) e.shape.push_back(long(v));
        has_shape = true;
      } else if (k == "data_offsets") {
        const auto o = ints();
        if (o.size() != 2) fail("tensor '" + name + "': data_offsets must hold 2 numbers");
        e.begin = o[0], e.end = o[1], has_off = true;
      } else fail("tensor '" + name + "': unknown field '" + k + "'");
    } while (accept(','));
    expect('}');
    if (!has_dtype || !has_shape || !has_off) fail("tensor '" + name + "': needs dtype, shape and data_offsets");
    return e;
  }
  std::vector<std::uint64_t> ints() {
    std::vector<std::uint64_t> v;
    expect('[');
    if (peek() != ']') {
      do {
        ws();
        if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') fail("expected a non-negative integer");
        std::uint64_t x = 0;
        while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
          if (x > (UINT64_MAX - 9) / 10) fail("integer too large");
          x = x * 10 + std::uint64_t(s_[i_++] - '0');
        }
        v.push_back(x);
      } while (accept(','));
    }
    expect(']');
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (i_ + 4 > s_.size()) fail("truncated \\u escape");
          for (std::size_t k = i_; k < i_ + 4; ++k)
            if (!std::isxdigit(static_cast<unsigned char>(s_[k]))) fail("bad \\u escape");
          const unsigned cp = unsigned(std::stoul(s_.substr(i_, 4), nullptr, 16));
          i_ += 4;
          if (cp < 0x80) out += char(cp);
          else if (cp < 0x800) out += char(0xC0 | (cp >> 6)), out += char(0x80 | (cp & 0x3F));
          else out += char(0xE0 | (cp >> 12)), out += char(0x80 | ((cp >> 6) & 0x3F)), out += char(0x80 | (cp & 0x3F));
          break;
        }
        default: fail(std::string("bad escape \\") + e);
      }
    }
    return out;
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  char peek() {
    ws();
    return i_ < s_.size() ? s_[i_] : '\0';
  }
  bool accept(char c) {
    if (peek() != c) return false;
    ++i_;
    return true;
  }
  void expect(char c) {
    if (!accept(c)) fail(std::string("expected '") + c + "'");
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw io_error(detail::cat("safetensors '", file_, "': bad header at byte ", i_, ": ", what));
  }
  const std::string& s_;
  const std::string& file_;
  std::size_t i_ = 0;
};

inline std::size_t dtype_size(const std::string& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "F64" || d == "I64") return 8;
  if (d == "F16" || d == "BF16") return 2;
  if (d == "BOOL" || d == "U8") return 1;
  return 0;
}
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  std::uint32_t bits;
  if (e == 0) {
    if (m == 0) bits = s;
    else {  // subnormal: renormalise
      int k = -1;
      std::uint32_t mm = m;
      do { ++k, mm <<= 1; } while (!(mm & 0x400));
      bits = s | (std::uint32_t(127 - 15 - k) << 23) | ((mm & 0x3FF) << 13);
    }
  } else if (e == 31) bits = s | 0x7F800000u | (m << 13);
  else bits = s | ((e + 127 - 15) << 23) | (m << 13);
  return std::bit_cast<float>(bits);
}
inline std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
      o += buf;
    } else o += c;
  }
  return o;
}
}  // namespace st_detail

/// Reads and validates a safetensors file: header plus raw data.
struct SafeTensorsFile {
  st_detail::Header header;
  std::vector<char> data;
  std::string path;
  /// Values of tensor `name` converted from its dtype to T (float or double).
  template <class T = float>
  std::vector<T> values(const std::string& name) const {
    const auto& e = header.tensors.at(name);
    const std::size_t n = (e.end - e.begin) / st_detail::dtype_size(e.dtype);
    std::vector<T> v(n);
    const char* p = data.data() + e.begin;
    for (std::size_t i = 0; i < n; ++i) {
      if (e.dtype == "F32") {
        float f;
        std::memcpy(&f, p + 4 * i, 4);
        v[i] = T(f);
      } else if (e.dtype == "F64") {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        v[i] = T(d);
      } else if (e.dtype == "I64") {
        std::int64_t d;
        std::memcpy(&d, p + 8 * i, 8);
        v[i] = T(d);
      } else if (e.dtype == "I32") {
        std::int32_t d;
        std::memcpy(&d, p + 4 * i, 4);
        v[i] = T(d);
      } else if (e.dtype == "BOOL" || e.dtype == "U8") {
        v[i] = T(static_cast<unsigned char>(p[i]));
      } else {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        v[i] = T(e.dtype == "BF16" ? std::bit_cast<float>(std::uint32_t(h) << 16) : st_detail::half_to_float(h));
      }
    }
    return v;
  }
  bool has(const std::string& name) const { return header.tensors.count(name) > 0; }
  /// Tensor `name` as a rows x cols matrix (its shape must hold rows·cols values).
  template <class T>
  HostMatrix<T> matrix(const std::string& name, long rows, long cols) const {
    const std::vector<T> v = values<T>(name);
    if (long(v.size()) != rows * cols)
      throw io_error(detail::cat("safetensors '", path, "': tensor '", name, "' holds ", v.size(), " values, expected ",
                                 rows, "x", cols));
    HostMatrix<T> m(rows, cols);
    std::copy(v.begin(), v.end(), m.data());
    return m;
  }
};

namespace st_detail {
inline void check_header_length(std::uint64_t n, std::uint64_t size, std::uint64_t max_header, const std::string& path) {
  if (size < 8) throw io_error(detail::cat("safetensors '", path, "': file has ", size, " bytes, too short for a header"));
  if (n > max_header || n > size - 8)
    throw io_error(detail::cat("safetensors '", path, "': header length ", n, " exceeds ",
                               n > max_header ? "the limit of " : "the file's remaining ",
                               n > max_header ? max_header : size - 8, " bytes"));
}
/// Every tensor's dtype known, shape sane, byte range inside the data section and disjoint from the others.
inline void check_ranges(const SafeTensorsFile& out) {
  const std::string& path = out.path;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& [name, e] : out.header.tensors) {
    const std::size_t es = dtype_size(e.dtype);
    if (es == 0)
      throw io_error(detail::cat("safetensors '", path, "': tensor '", name, "' has dtype ", e.dtype,
                                 "; biflow reads F32, F64, F16, BF16, I64, I32, BOOL and U8"));
    std::uint64_t count = 1;
    for (long d : e.shape) {
      if (d < 0 || (d > 0 && count > UINT64_MAX / std::uint64_t(d)))
        throw io_error(detail::cat("safetensors '", path, "': tensor '", name, "' has an invalid shape"));
      count *= std::uint64_t(d);
    }
    if (e.end < e.begin || e.end > out.data.size() || (e.end - e.begin) / es != count || (e.end - e.begin) % es)
      throw io_error(detail::cat("safetensors '", path, "': tensor '", name, "' data_offsets [", e.begin, ", ", e.end,
                                 ") do not hold ", count, " ", e.dtype, " values inside the ", out.data.size(),
                                 "-byte data section"));
    ranges.push_back({e.begin, e.end});
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      throw io_error(detail::cat("safetensors '", path, "': tensor data ranges overlap at byte ", ranges[i].first));
}
}  // namespace st_detail

/// Reads and validates a safetensors file (see the file comment for what is checked).
inline SafeTensorsFile read_safetensors(const std::string& path, std::uint64_t max_header = 100u << 20) {
  static_assert(std::endian::native == std::endian::little, "biflow's safetensors I/O assumes a little-endian host");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io_error(detail::cat("safetensors: cannot open '", path, "'"));
  f.seekg(0, std::ios::end);
  const std::uint64_t size = std::uint64_t(f.tellg());
  f.seekg(0);
  std::uint64_t n = 0;
  if (size >= 8) f.read(reinterpret_cast<char*>(&n), 8);
  st_detail::check_header_length(n, size, max_header, path);
  std::string js(n, '\0');
  f.read(js.data(), std::streamsize(n));
  SafeTensorsFile out{st_detail::Parser(js, path).parse(), std::vector<char>(size - 8 - n), path};
  f.read(out.data.data(), std::streamsize(out.data.size()));
  if (!f) throw io_error(detail::cat("safetensors '", path, "': read failed"));
  st_detail::check_ranges(out);
  return out;
}

/// The same from bytes in memory (a download, an archive member); `name` stands for the path in messages.
inline SafeTensorsFile parse_safetensors(std::string_view bytes, const std::string& name = "<memory>",
                                         std::uint64_t max_header = 100u << 20) {
  static_assert(std::endian::native == std::endian::little, "biflow's safetensors I/O assumes a little-endian host");
  std::uint64_t n = 0;
  if (bytes.size() >= 8) std::memcpy(&n, bytes.data(), 8);
  st_detail::check_header_length(n, bytes.size(), max_header, name);
  SafeTensorsFile out{st_detail::Parser(std::string(bytes.substr(8, n)), name).parse(),
                      std::vector<char>(bytes.begin() + std::ptrdiff_t(8 + n), bytes.end()), name};
  st_detail::check_ranges(out);
  return out;
}

/// One tensor to write: name, dtype ("F32"/"F64"), shape, raw little-endian bytes.
struct TensorBlob {
  std::string name, dtype;
  std::vector<long> shape;
  std::vector<char> bytes;
};
/// A matrix as a blob: F32 for float, F64 for double; a 1 x n matrix gets shape [n] (as torch stores biases).
template <class T>
TensorBlob blob(std::string name, const HostMatrix<T>& m) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "blob: float or double matrices only");
  TensorBlob b{std::move(name), std::is_same_v<T, float> ? "F32" : "F64", {}, {}};
  if (m.rows() == 1) b.shape = {m.cols()};
  else b.shape = {m.rows(), m.cols()};
  b.bytes.resize(std::size_t(m.size()) * sizeof(T));
  std::memcpy(b.bytes.data(), m.data(), b.bytes.size());
  return b;
}

/// Writes tensors plus string metadata as one safetensors file, atomically (atomic_file.hpp).
inline void write_safetensors(const std::string& path, const std::vector<TensorBlob>& ts,
                              const std::map<std::string, std::string>& metadata = {}) {
  std::ostringstream h;
  h << "{";
  bool first = true;
  if (!metadata.empty()) {
    h << "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      h << (first ? "" : ",") << "\"" << st_detail::escape(k) << "\":\"" << st_detail::escape(v) << "\"";
      first = false;
    }
    h << "}";
    first = false;
  }
  std::uint64_t off = 0;
  for (const auto& t : ts) {
    h << (first ? "" : ",") << "\"" << st_detail::escape(t.name) << "\":{\"dtype\":\"" << t.dtype << "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) h << (i ? "," : "") << t.shape[i];
    h << "],\"data_offsets\":[" << off << "," << off + t.bytes.size() << "]}";
    off += t.bytes.size();
    first = false;
  }
  h << "}";
  std::string js = h.str();
  while ((js.size() + 8) % 8) js += ' ';
  write_atomically(path, [&](std::ofstream& f) {
    const std::uint64_t n = js.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(js.data(), std::streamsize(js.size()));
    for (const auto& t : ts) f.write(t.bytes.data(), std::streamsize(t.bytes.size()));
  });
}

/// A buffer as a blob: I64 for index buffers, F64 for real ones, BOOL for flags.
inline TensorBlob buffer_blob(std::string name, const Buffer& b) {
  TensorBlob t{std::move(name), "F64", b.shape, {}};
  switch (b.kind) {
    case Buffer::Kind::index: {
      t.dtype = "I64";
      for (double x : b.values) {
        const auto i = static_cast<std::int64_t>(x);
        const char* c = reinterpret_cast<const char*>(&i);
        t.bytes.insert(t.bytes.end(), c, c + 8);
      }
      break;
    }
    case Buffer::Kind::flag:
      t.dtype = "BOOL";
      for (double x : b.values) t.bytes.push_back(x != 0.0 ? 1 : 0);
      break;
    case Buffer::Kind::real: {
      const char* c = reinterpret_cast<const char*>(b.values.data());
      t.bytes.assign(c, c + b.values.size() * sizeof(double));
      break;
    }
  }
  return t;
}

/// What loading does with a structural buffer (a permutation, an order, a mask) whose saved values differ from
/// the model's: `check` refuses (the model was built differently — another seed?), `take` installs the file's.
enum class BufferLoad { check, take };

namespace st_detail {
inline std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > 8) s += detail::cat(", ... (", v.size(), " in all)");
  return s;
}
inline std::string preview(const std::vector<double>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size() && i < 6; ++i) s += (i ? "," : "") + detail::cat(v[i]);
  return s + (v.size() > 6 ? ",...]" : "]");
}
/// Checks every buffer of m against file tensors named prefix + name; appends problems to missing / bad and
/// returns (assign, values) pairs to run once everything has been validated. `used` marks the tensors read.
template <class M>
std::vector<std::pair<std::function<void(const std::vector<double>&)>, std::vector<double>>> stage_buffers(
    const SafeTensorsFile& f, M& m, const std::string& prefix, BufferLoad policy, std::vector<std::string>& missing,
    std::vector<std::string>& bad, std::map<std::string, bool>* used) {
  std::vector<std::pair<std::function<void(const std::vector<double>&)>, std::vector<double>>> out;
  visit_buffers_of(m, [&](const std::string& name, const Buffer& b) {
    const std::string key = prefix + name;
    const auto it = f.header.tensors.find(key);
    if (it == f.header.tensors.end()) return missing.push_back(key + " (buffer)");
    if (used) (*used)[key] = true;
    long n = 1;
    for (long d : it->second.shape) n *= d;
    if (long(b.values.size()) != n)
      return bad.push_back(detail::cat(key, " (buffer: file holds ", n, " values, the model ", b.values.size(), ")"));
    std::vector<double> vals = f.template values<double>(key);
    if (b.structural && vals != b.values && policy == BufferLoad::check)
      return bad.push_back(detail::cat(key, " (buffer differs: file ", preview(vals), ", model ", preview(b.values),
                                       " — the model was built differently, e.g. with another seed; build it as it "
                                       "was saved, or load with io::BufferLoad::take to use the file's)"));
    out.emplace_back(b.assign, std::move(vals));
  }, "");
  return out;
}
}  // namespace st_detail

/// Writes every parameter and buffer of m (visit order, PyTorch-style names; parameters F32 for float models, F64
/// for double; buffers I64 / F64 / BOOL) plus string metadata, atomically.
template <class M>
void save_safetensors(const std::string& path, M& m, const std::map<std::string, std::string>& metadata = {},
                      const std::string& prefix = "") {
  std::vector<TensorBlob> ts;
  m.visit_parameters([&](const std::string& name, auto& p) { ts.push_back(blob(prefix + name, to_host(p.value))); }, "");
  visit_buffers_of(m, [&](const std::string& name, const Buffer& b) { ts.push_back(buffer_blob(prefix + name, b)); }, "");
  write_safetensors(path, ts, metadata);
}

/// Loads every parameter and buffer of m by name. Shapes must agree up to leading/trailing 1s ([n] fits a 1 x n
/// parameter). Missing or unexpected tensors, and structural buffers whose values differ (unless
/// `buffers == BufferLoad::take`), are an error listing their names; nothing is changed unless the whole file
/// matches.
template <class M>
std::map<std::string, std::string> load_safetensors(const std::string& path, M& m, BufferLoad buffers = BufferLoad::check) {
  const SafeTensorsFile f = read_safetensors(path);
  std::vector<std::string> missing, bad;
  std::map<std::string, bool> used;
  for (const auto& [name, e] : f.header.tensors) used[name] = false;
  auto squeeze = [](std::vector<long> s) {
    s.erase(std::remove(s.begin(), s.end(), 1L), s.end());
    return s;
  };
  m.visit_parameters([&](const std::string& name, auto& p) {
    const auto it = f.header.tensors.find(name);
    if (it == f.header.tensors.end()) return missing.push_back(name);
    used[name] = true;
    if (squeeze(it->second.shape) != squeeze({p.value.rows(), p.value.cols()})) {
      std::string s = "[";
      for (std::size_t i = 0; i < it->second.shape.size(); ++i) s += (i ? "," : "") + std::to_string(it->second.shape[i]);
      bad.push_back(detail::cat(name, " (file ", s, "], model ", p.value.rows(), "x", p.value.cols(), ")"));
    }
  }, "");
  auto staged = st_detail::stage_buffers(f, m, "", buffers, missing, bad, &used);
  std::vector<std::string> unexpected;
  for (const auto& [name, u] : used)
    if (!u) unexpected.push_back(name);
  const auto join = st_detail::join_names;
  if (!missing.empty() || !bad.empty() || !unexpected.empty())
    throw io_error(detail::cat("safetensors '", path, "' does not match the model:",
                               missing.empty() ? "" : " missing: " + join(missing) + ";",
                               bad.empty() ? "" : " wrong shape: " + join(bad) + ";",
                               unexpected.empty() ? "" : " unexpected: " + join(unexpected) + ";"));
  // A buffer's assign validates (a permutation, a 0/1 mask) and may refuse: run them on a copy first.
  if (!staged.empty()) {
    M trial = m;
    for (auto& [assign, vals] : st_detail::stage_buffers(f, trial, "", buffers, missing, bad, nullptr)) assign(vals);
    m = std::move(trial);
  }
  m.visit_parameters([&](const std::string& name, auto& p) {
    using B = typename std::decay_t<decltype(p.value)>::backend;
    using T = typename B::scalar;
    p.value = from_host<B>(f.template matrix<T>(name, p.value.rows(), p.value.cols()));
  }, "");
  return f.header.metadata;
}

}  // namespace biflow::io
