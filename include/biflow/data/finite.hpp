#pragma once
// Data validation before training: a NaN or Inf in a data set poisons every step it is drawn into, far from
// its cause. require_finite names the first bad row and column (and how many rows are bad) up front.
#include <cmath>
#include <string>

#include "../backend/tensor.hpp"

namespace biflow::data {

/// Throws numeric_error "<what>: non-finite value (nan) at row r, column c; k of N rows hold non-finite values"
/// if m holds a NaN or ±Inf; rows and columns are 0-based.
template <class T>
void require_finite(const HostMatrix<T>& m, const std::string& what) {
  long first_r = -1, first_c = -1, bad_rows = 0;
  for (long r = 0; r < m.rows(); ++r) {
    long c = 0;
    while (c < m.cols() && std::isfinite(double(m(r, c)))) ++c;
    if (c == m.cols()) continue;
    if (bad_rows++ == 0) first_r = r, first_c = c;
  }
  if (bad_rows > 0)
    throw numeric_error(detail::cat(what, ": non-finite value (", double(m(first_r, first_c)), ") at row ", first_r,
                                    ", column ", first_c, "; ", bad_rows, " of ", m.rows(),
                                    " rows hold non-finite values"));
}

}  // namespace biflow::data
