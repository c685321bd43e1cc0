#pragma once
// Buffers: state a model needs that is not trained (PyTorch's register_buffer): a permutation, a token order, a
// coupling or MADE mask, LU's fixed permutation and signs, ActNorm's "initialised" flag, standardisation
// statistics. Parameters + buffers = the whole state; safetensors files and checkpoints save both.
//
// A layer with buffers has visit_buffers(v, prefix) calling v(name, Buffer) for each; visit_buffers_of(m, v, prefix)
// calls it when m has one, so layers without buffers write nothing. A Buffer carries a host copy of the values and
// an `assign` that validates new values and installs them (rebuilding whatever the layer derives from them, e.g. a
// permutation's device index lists).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "errors.hpp"

namespace biflow {

struct Buffer {
  enum class Kind {
    index,  ///< integers (permutations, orders): saved as I64
    real,   ///< real values (masks, statistics, signs): saved as F64
    flag    ///< one boolean: saved as BOOL
  };
  Kind kind = Kind::real;
  /// Structural buffers are decided when the model is built (a seeded permutation, masks): loading a file whose
  /// values differ means the model was built differently, and is an error unless the caller asks to take the
  /// file's. Non-structural buffers (ActNorm's initialised flag, running statistics) are state and always load.
  bool structural = true;
  std::vector<long> shape;
  std::vector<double> values;  ///< exact for integers below 2⁵³
  std::function<void(const std::vector<double>&)> assign;
};

namespace detail {
struct AnyBufferVisitor {
  void operator()(const std::string&, const Buffer&) const {}
};
}  // namespace detail

/// An integer buffer over `values` (shape [n]); assign receives the new integers.
template <class I, class Assign>
Buffer index_buffer(const std::vector<I>& values, Assign&& assign) {
  Buffer b{Buffer::Kind::index, true, {long(values.size())}, {values.begin(), values.end()}, {}};
  b.assign = [a = std::forward<Assign>(assign)](const std::vector<double>& v) {
    std::vector<I> out;
    out.reserve(v.size());
    for (double x : v) out.push_back(static_cast<I>(x));
    a(std::move(out));
  };
  return b;
}

/// A flag buffer (non-structural: it is state, it always loads).
inline Buffer flag_buffer(bool value, std::function<void(bool)> assign) {
  Buffer b{Buffer::Kind::flag, false, {}, {value ? 1.0 : 0.0}, {}};
  b.assign = [a = std::move(assign)](const std::vector<double>& v) { a(!v.empty() && v[0] != 0.0); };
  return b;
}

/// Calls m.visit_buffers(v, prefix) where m has buffers; nothing otherwise.
template <class M, class V>
void visit_buffers_of(M& m, V&& v, const std::string& prefix) {
  if constexpr (requires { m.visit_buffers(v, prefix); }) m.visit_buffers(v, prefix);
}

/// Whether any buffer of m exists (for messages and tests).
template <class M>
long buffer_count(M& m) {
  long n = 0;
  visit_buffers_of(m, [&](const std::string&, const Buffer&) { ++n; }, "");
  return n;
}

}  // namespace biflow
