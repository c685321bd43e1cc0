#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace biflow {

/// Base of every exception biflow throws: catch this to catch them all.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// A tensor had the wrong number of rows or columns; the message names expected and actual. A missing context for a
/// conditional model, or a context given to an unconditional one, is a shape_error everywhere.
struct shape_error : error {
  using error::error;
};
/// NaN/Inf or an out-of-domain value where a finite one was required.
struct numeric_error : error {
  using error::error;
};
/// A file could not be read or written, or its contents are malformed.
struct io_error : error {
  using error::error;
};
/// A bad argument or a call that the object's state does not allow.
struct usage_error : error {
  using error::error;
};
/// A collective operation between processes failed (a peer exited, the transport reported an error, a timeout);
/// the message names the operation, the rank and the engine's own words.
struct communication_error : error {
  using error::error;
};

namespace detail {
template <class... A>
std::string cat(const A&... a) {
  std::ostringstream s;
  (s << ... << a);
  return s.str();
}
}  // namespace detail

/// Throws shape_error "<where>: expected <what> of <exp>, got <got>" unless exp == got.
inline void require_dim(const char* where, const char* what, long expected, long actual) {
  if (expected != actual)
    throw shape_error(detail::cat(where, ": expected ", what, " = ", expected, ", got ", actual));
}

}  // namespace biflow
