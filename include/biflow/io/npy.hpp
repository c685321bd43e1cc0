#pragma once
// NumPy .npy files (format 1.0/2.0/3.0): how a Python user hands biflow a data set and reads back samples
// (e.g. to decode latents with their own VAE). Reads little-endian float32/float64 arrays in C order of any rank
// as rows x (product of the other dimensions) — an N x 4 x 32 x 32 latent file becomes N rows of 4096 values, the
// CHW layout biflow's patchify expects — and writes float32 or float64. Integer arrays (<i8, <i4, |u1: labels) are read
// as doubles. Everything else (Fortran order, big-endian, other or object dtypes, truncated data, malformed headers)
// is an io_error naming the problem.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "../backend/tensor.hpp"
#include "atomic_file.hpp"

namespace biflow::io {

struct NpyArray {
  std::vector<long> shape;
  std::string dtype;  ///< "<f4", "<f8", "<i8", "<i4" or "|u1"
  HostMatrix<double> data;  ///< rows = shape[0] (1 for a 0-d array), cols = product of the rest
};

namespace npy_detail {
[[noreturn]] inline void fail(const std::string& path, const std::string& what) {
  throw io_error(detail::cat("npy '", path, "': ", what));
}
/// Value of 'key' in the header dict, as the raw text up to the next top-level ',' or '}'.
inline std::string field(const std::string& h, const std::string& key, const std::string& path) {
  const auto k = h.find("'" + key + "'");
  if (k == std::string::npos) fail(path, "header has no '" + key + "' (header: " + h + ")");
  auto p = h.find(':', k);
  if (p == std::string::npos) fail(path, "malformed header near '" + key + "'");
  ++p;
  int depth = 0;
  std::size_t e = p;
  for (; e < h.size(); ++e) {
    const char c = h[e];
    if (c == '(' || c == '[') ++depth;
    else if (c == ')' || c == ']') --depth;
    else if ((c == ',' || c == '}') && depth == 0) break;
  }
  std::string v = h.substr(p, e - p);
  const auto b = v.find_first_not_of(" \t"), en = v.find_last_not_of(" \t");
  return b == std::string::npos ? "" : v.substr(b, en - b + 1);
}
}  // namespace npy_detail

/// Parses .npy bytes held in memory; `path` names the source in messages.
inline NpyArray parse_npy(std::string_view bytes, const std::string& path = "<memory>",
                          std::uint64_t max_bytes = std::uint64_t(1) << 36) {
  static_assert(std::endian::native == std::endian::little, "biflow's npy I/O assumes a little-endian host");
  const std::uint64_t size = bytes.size();
  if (size < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) npy_detail::fail(path, "not an .npy file (bad magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::uint64_t hlen = 0, hstart = 0;
  if (major == 1) {
    std::uint16_t h16 = 0;
    std::memcpy(&h16, bytes.data() + 8, 2);
    hlen = h16;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) npy_detail::fail(path, "header runs past the end of the file");
    std::uint32_t h32 = 0;
    std::memcpy(&h32, bytes.data() + 8, 4);
    hlen = h32;
    hstart = 12;
  } else {
    npy_detail::fail(path, detail::cat("unsupported format version ", major));
  }
  const std::uint64_t data_start = hstart + hlen;
  if (data_start > size) npy_detail::fail(path, "header runs past the end of the file");
  const std::string h(bytes.substr(hstart, hlen));
  NpyArray out;
  std::string descr = npy_detail::field(h, "descr", path);
  if (descr.size() >= 2 && (descr.front() == '\'' || descr.front() == '"')) descr = descr.substr(1, descr.size() - 2);
  // Integers are accepted for labels (PyTorch and NumPy write int64 class indices); they become doubles.
  if (descr != "<f4" && descr != "<f8" && descr != "<i8" && descr != "<i4" && descr != "|u1")
    npy_detail::fail(path, "dtype '" + descr + "' is not supported; biflow reads little-endian float32 ('<f4'), "
                           "float64 ('<f8') and integer ('<i8', '<i4', '|u1') arrays (convert with "
                           "arr.astype(np.float32))");
  out.dtype = descr;
  if (npy_detail::field(h, "fortran_order", path) != "False")
    npy_detail::fail(path, "Fortran-ordered arrays are not supported (save np.ascontiguousarray(arr))");
  std::string shape = npy_detail::field(h, "shape", path);
  if (shape.size() < 2 || shape.front() != '(' || shape.back() != ')') npy_detail::fail(path, "malformed shape " + shape);
  std::uint64_t count = 1;
  for (std::size_t i = 1; i + 1 < shape.size();) {
    while (i + 1 < shape.size() && (shape[i] == ' ' || shape[i] == ',')) ++i;
    if (i + 1 >= shape.size()) break;
    if (shape[i] < '0' || shape[i] > '9') npy_detail::fail(path, "malformed shape " + shape);
    std::uint64_t d = 0;
    while (i + 1 < shape.size() && shape[i] >= '0' && shape[i] <= '9') {
      d = d * 10 + std::uint64_t(shape[i++] - '0');
      if (d > max_bytes) npy_detail::fail(path, "dimension too large in shape " + shape);
    }
    out.shape.push_back(long(d));
    if (d != 0 && count > max_bytes / d) npy_detail::fail(path, "shape " + shape + " is too large");
    count *= d;
  }
  const std::uint64_t es = descr == "|u1" ? 1 : descr == "<f4" || descr == "<i4" ? 4 : 8;
  if (count > max_bytes / es) npy_detail::fail(path, "shape " + shape + " is too large");
  if (size - data_start != count * es)
    npy_detail::fail(path, detail::cat("shape ", shape, " needs ", count * es, " bytes of ", descr, " data, the file has ",
                                       size - data_start));
  const long rows = out.shape.empty() ? 1 : out.shape[0];
  const long cols = rows == 0 ? 0 : long(count) / rows;
  out.data.resize(rows, cols);
  const char* p = bytes.data() + data_start;
  auto read_as = [&]<class V>(V) {
    for (std::uint64_t i = 0; i < count; ++i) {
      V v;
      std::memcpy(&v, p + sizeof(V) * i, sizeof(V));
      out.data.data()[i] = double(v);
    }
  };
  if (descr == "<f4") read_as(float{});
  else if (descr == "<f8") read_as(double{});
  else if (descr == "<i8") read_as(std::int64_t{});
  else if (descr == "<i4") read_as(std::int32_t{});
  else read_as(std::uint8_t{});
  return out;
}

/// Reads an .npy file (format 1.0/2.0/3.0; see the file comment for what is accepted).
inline NpyArray read_npy(const std::string& path, std::uint64_t max_bytes = std::uint64_t(1) << 36) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io_error(detail::cat("npy: cannot open '", path, "'"));
  f.seekg(0, std::ios::end);
  const std::uint64_t size = std::uint64_t(f.tellg());
  if (size > max_bytes + (std::uint64_t(1) << 32))
    npy_detail::fail(path, detail::cat("file of ", size, " bytes exceeds the limit of ", max_bytes, " bytes of data"));
  f.seekg(0);
  std::string bytes(size, '\0');
  f.read(bytes.data(), std::streamsize(size));
  if (!f) npy_detail::fail(path, "read failed");
  return parse_npy(bytes, path, max_bytes);
}

/// Reads an .npy array as a rows x cols matrix of T (see read_npy for the shapes accepted).
template <class T = float>
HostMatrix<T> load_npy(const std::string& path) {
  return read_npy(path).data.template cast<T>();
}

/// Writes m as an .npy array of the given shape (default: rows x cols), atomically (see atomic_file.hpp), in the
/// matrix's own type: float32, float64, int64 or int32 (e.g. labels that NumPy/PyTorch read as integers).
template <class T>
void save_npy(const std::string& path, const HostMatrix<T>& m, std::vector<long> shape = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t> ||
                    std::is_same_v<T, std::int32_t>,
                "save_npy: float, double, int64 or int32 matrices only");
  const char* descr = std::is_same_v<T, float>          ? "<f4"
                      : std::is_same_v<T, double>       ? "<f8"
                      : std::is_same_v<T, std::int64_t> ? "<i8"
                                                        : "<i4";
  if (shape.empty()) shape = {m.rows(), m.cols()};
  long count = 1;
  for (long d : shape) count *= d;
  if (count != m.size())
    throw usage_error(detail::cat("save_npy: shape holds ", count, " values, the matrix ", m.size()));
  std::string h = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) h += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  h += "), }";
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  write_atomically(path, [&](std::ofstream& f) {
    f.write("\x93NUMPY\x01\x00", 8);
    const std::uint16_t n = static_cast<std::uint16_t>(h.size());
    f.write(reinterpret_cast<const char*>(&n), 2);
    f.write(h.data(), std::streamsize(h.size()));
    f.write(reinterpret_cast<const char*>(m.data()), std::streamsize(m.size() * sizeof(T)));
  });
}

/// Writes integer labels as a 1-D int64 .npy array (what NumPy and PyTorch use for class labels).
inline void save_npy_labels(const std::string& path, const std::vector<int>& labels) {
  HostMatrix<std::int64_t> m(long(labels.size()), 1);
  for (std::size_t i = 0; i < labels.size(); ++i) m(long(i), 0) = labels[i];
  save_npy(path, m, {long(labels.size())});
}

}  // namespace biflow::io
