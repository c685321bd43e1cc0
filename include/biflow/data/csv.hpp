#pragma once
// CSV of N numeric columns, header optional. Errors name the file, line and column.
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <istream>
#include <sstream>
#include <string>
#include <vector>

#include "../backend/tensor.hpp"

namespace biflow::data {

namespace csv_detail {
inline std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream s(line);
  while (std::getline(s, cell, ',')) out.push_back(cell);
  if (!line.empty() && line.back() == ',') out.push_back("");
  return out;
}
inline std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\"");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\"");
  return s.substr(b, e - b + 1);
}
inline bool parse(const std::string& cell, double& v) {
  const std::string t = trim(cell);
  if (t.empty()) return false;
  char* end = nullptr;
  errno = 0;
  v = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size();
}
}  // namespace csv_detail

/// Parses numeric CSV text from a stream (`path` names it in messages); see load_csv.
inline HostMatrix<double> parse_csv(std::istream& f, const std::string& path, std::vector<std::string>* header = nullptr) {
  std::vector<double> vals;
  long cols = -1, rows = 0, lineno = 0;
  std::string line;
  while (std::getline(f, line)) {
    ++lineno;
    if (csv_detail::trim(line).empty()) continue;
    const auto cells = csv_detail::split(line);
    std::vector<double> row(cells.size());
    bool numeric = true;
    long bad = -1;
    for (std::size_t j = 0; j < cells.size(); ++j)
      if (!csv_detail::parse(cells[j], row[j])) {
        numeric = false;
        if (bad < 0) bad = long(j);
      }
    if (!numeric && rows == 0 && cols < 0) {  // header line
      cols = long(cells.size());
      if (header)
        for (auto& c : cells) header->push_back(csv_detail::trim(c));
      continue;
    }
    if (cols < 0) cols = long(cells.size());
    if (long(cells.size()) != cols)
      throw io_error(detail::cat("load_csv: '", path, "' line ", lineno, ": expected ", cols, " columns, got ",
                                 cells.size()));
    if (!numeric)
      throw io_error(detail::cat("load_csv: '", path, "' line ", lineno, " column ", bad + 1, ": '",
                                 csv_detail::trim(cells[bad]), "' is not a number"));
    for (std::size_t j = 0; j < row.size(); ++j)
      if (!std::isfinite(row[j]))
        throw numeric_error(detail::cat("load_csv: '", path, "' line ", lineno, " column ", j + 1,
                                        ": non-finite value (", row[j], ") in data row ", rows));
    vals.insert(vals.end(), row.begin(), row.end());
    ++rows;
  }
  if (rows == 0) throw io_error(detail::cat("load_csv: '", path, "' has no data rows"));
  HostMatrix<double> m(rows, cols);
  for (long i = 0; i < m.size(); ++i) m.data()[i] = vals[std::size_t(i)];
  return m;
}

/// Reads a numeric CSV. A first line whose cells are not all numbers is taken as a header.
/// Throws io_error for a missing/empty file, ragged rows and non-numeric cells, numeric_error for NaN/Inf values.
inline HostMatrix<double> load_csv(const std::string& path, std::vector<std::string>* header = nullptr) {
  std::ifstream f(path);
  if (!f) throw io_error(detail::cat("load_csv: cannot open '", path, "'"));
  return parse_csv(f, path, header);
}

/// Writes rows as CSV (no header unless given).
inline void save_csv(const std::string& path, const HostMatrix<double>& m, const std::vector<std::string>& header = {}) {
  std::ofstream f(path);
  if (!f) throw io_error(detail::cat("save_csv: cannot write '", path, "'"));
  f.precision(17);
  for (std::size_t j = 0; j < header.size(); ++j) f << (j ? "," : "") << header[j];
  if (!header.empty()) f << "\n";
  for (long i = 0; i < m.rows(); ++i) {
    for (long j = 0; j < m.cols(); ++j) f << (j ? "," : "") << m(i, j);
    f << "\n";
  }
  if (!f) throw io_error(detail::cat("save_csv: write to '", path, "' failed"));
}

}  // namespace biflow::data
