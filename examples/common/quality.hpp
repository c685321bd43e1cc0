#pragma once
// The examples' sample-quality table: every row (model samples and the known-bad / real reference rows) judged by
// one biflow::QualitySuite, printed as a table and written as flat JSON keys (fd_<key>, fd_<key>_lo, ...).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <biflow/eval/sample_quality.hpp>
#include <biflow/io/npy.hpp>

namespace examples {

struct QualityEntry {
  std::string key, label;
  biflow::QualityRow row;
  double accuracy = std::numeric_limits<double>::quiet_NaN();  ///< NaN: no classifier
};

inline void print_quality(const std::vector<QualityEntry>& rows, const biflow::QualitySuite& s, const char* space) {
  std::printf("sample quality in %s vs held-out data: n = %ld rows per set against a reference half of %ld, median "
              "[%.0f%% interval] over %ld random splits\n",
              space, s.n(), s.n_reference(), 100 * s.options().level, s.options().replicates);
  std::printf("%-36s %6s %22s %24s %9s %9s %9s\n", "", "acc", "FD", "KID x 1e3", "precision", "recall", "novelty");
  for (const QualityEntry& e : rows) {
    const biflow::QualityRow& r = e.row;
    char acc[16] = "     -";
    if (!std::isnan(e.accuracy)) std::snprintf(acc, sizeof acc, "%6.3f", e.accuracy);
    std::printf("%-36s %s %7.3f [%5.2f, %5.2f] %7.2f [%6.2f, %6.2f] %9.3f %9.3f %9.3f\n", e.label.c_str(), acc,
                r.fd.median, r.fd.lo, r.fd.hi, 1e3 * r.kid.median, 1e3 * r.kid.lo, 1e3 * r.kid.hi,
                r.precision.median, r.recall.median, r.novelty.median);
  }
}

/// ",\n  \"fd_<space>_<key>\": …" lines for a JSON object being written (median, _lo, _hi of each statistic;
/// acc_<key> once, it does not depend on the space).
inline std::string quality_json(const std::vector<QualityEntry>& rows, const biflow::QualitySuite& s,
                                const std::string& space, bool with_accuracy) {
  std::ostringstream o;
  o.precision(8);
  o << ",\n  \"quality_" << space << "_n\": " << s.n() << ",\n  \"quality_" << space << "_n_reference\": "
    << s.n_reference() << ",\n  \"quality_" << space << "_replicates\": " << s.options().replicates;
  for (const QualityEntry& e : rows) {
    auto put = [&](const char* name, const biflow::Interval& v) {
      const std::string k = std::string(name) + "_" + space + "_" + e.key;
      o << ",\n  \"" << k << "\": " << v.median << ",\n  \"" << k << "_lo\": " << v.lo << ",\n  \"" << k
        << "_hi\": " << v.hi;
    };
    put("fd", e.row.fd);
    put("kid", e.row.kid);
    put("precision", e.row.precision);
    put("recall", e.row.recall);
    put("novelty", e.row.novelty);
    if (with_accuracy && !std::isnan(e.accuracy)) o << ",\n  \"acc_" << e.key << "\": " << e.accuracy;
  }
  return o.str();
}

/// --save-samples DIR: each named float32 N x D array (rows in label order) plus labels.npy (int64).
inline void save_samples(const std::string& dir, const std::vector<std::pair<std::string, biflow::HostMatrix<float>>>& sets,
                         const std::vector<int>& labels) {
  std::filesystem::create_directories(dir);
  for (const auto& [name, m] : sets) biflow::io::save_npy((std::filesystem::path(dir) / (name + ".npy")).string(), m);
  biflow::io::save_npy_labels((std::filesystem::path(dir) / "labels.npy").string(), labels);
  std::printf("wrote");
  for (const auto& s : sets) std::printf(" %s.npy", s.first.c_str());
  std::printf(" labels.npy (%zu rows) to %s\n", labels.size(), dir.c_str());
}

}  // namespace examples
