#pragma once
// Mini-batches of row indices: with replacement, or in epochs (each row once per epoch, reshuffled every epoch).
// The whole state is (seed, batches drawn): batch k is a pure function of them, so a resumed run draws exactly
// the batches the uninterrupted one would have (save `position()`, restore with `seek()`).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../backend/tensor.hpp"
#include "../core/errors.hpp"
#include "../core/rng.hpp"

namespace biflow::data {

enum class Sampling {
  with_replacement,  ///< every row drawn independently and uniformly
  epochs,            ///< without replacement: a fresh random order of all rows per epoch
};

class BatchSampler {
 public:
  /// rows: size of the data set; batch: rows per batch. With Sampling::epochs and drop_last (the default) every
  /// batch is full and the epoch's last rows_ % batch rows are skipped (a new order next epoch reaches them);
  /// without drop_last the epoch's last batch is smaller.
  BatchSampler(long rows, long batch, Sampling sampling, std::uint64_t seed, bool drop_last = true)
      : rows_(rows), batch_(batch), sampling_(sampling), seed_(seed), drop_last_(drop_last) {
    if (rows <= 0) throw usage_error(detail::cat("BatchSampler: the data set has no rows (", rows, ")"));
    if (batch <= 0) throw usage_error(detail::cat("BatchSampler: batch size must be positive, got ", batch));
    if (sampling == Sampling::epochs && drop_last && batch > rows)
      throw usage_error(detail::cat("BatchSampler: a full batch of ", batch, " rows without replacement needs at least ",
                                    batch, " rows, the data set has ", rows,
                                    " (use a smaller batch, drop_last = false, or Sampling::with_replacement)"));
  }

  /// Row indices of the next batch.
  std::vector<long> next() {
    std::vector<long> idx = batch_at(position_);
    ++position_;
    return idx;
  }
  /// Row indices of batch k (0-based, counted from the start of sampling); does not move the position.
  std::vector<long> batch_at(std::uint64_t k) const {
    if (sampling_ == Sampling::with_replacement) {
      Rng rng(seed_, k * std::uint64_t(batch_));
      std::vector<long> idx(static_cast<std::size_t>(batch_));
      for (auto& i : idx) i = long(rng.below(std::uint64_t(rows_)));
      return idx;
    }
    const std::uint64_t per = std::uint64_t(batches_per_epoch());
    const std::uint64_t epoch = k / per, j = k % per;
    if (epoch != cached_epoch_ || order_.empty()) {
      Rng rng(rng_detail::hash2(seed_, epoch));
      order_ = choose_distinct(rows_, rows_, rng);
      cached_epoch_ = epoch;
    }
    const long start = long(j) * batch_, n = std::min(batch_, rows_ - start);
    return std::vector<long>(order_.begin() + start, order_.begin() + start + n);
  }

  /// Batches drawn so far: with the seed, the sampler's whole state.
  std::uint64_t position() const { return position_; }
  /// Continues as if `batches` had been drawn (resume).
  void seek(std::uint64_t batches) { position_ = batches; }
  /// Completed passes over the data (Sampling::epochs); for with_replacement, batches drawn x batch / rows.
  double epoch() const { return double(position_) / double(batches_per_epoch()); }
  /// Batches in one epoch: rows / batch, rounded down with drop_last and up without.
  long batches_per_epoch() const {
    if (sampling_ == Sampling::with_replacement) return std::max<long>(1, rows_ / batch_);
    return drop_last_ ? rows_ / batch_ : (rows_ + batch_ - 1) / batch_;
  }
  long rows() const { return rows_; }
  long batch() const { return batch_; }
  std::uint64_t seed() const { return seed_; }
  Sampling sampling() const { return sampling_; }

 private:
  long rows_, batch_;
  Sampling sampling_;
  std::uint64_t seed_;
  bool drop_last_;
  std::uint64_t position_ = 0;
  mutable std::vector<long> order_;  // the current epoch's order (a cache of a pure function of seed and epoch)
  mutable std::uint64_t cached_epoch_ = 0;
};

/// The rows idx of x, in that order (a batch of data).
template <class T>
HostMatrix<T> take_rows(const HostMatrix<T>& x, const std::vector<long>& idx) {
  HostMatrix<T> out(static_cast<long>(idx.size()), x.cols());
  for (std::size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] < 0 || idx[i] >= x.rows())
      throw shape_error(detail::cat("take_rows: row ", idx[i], " is outside a ", x.rows(), "-row matrix"));
    out.row(long(i)) = x.row(idx[i]);
  }
  return out;
}
/// The entries idx of a label (or any per-row) vector, in that order.
template <class L>
std::vector<L> take_rows(const std::vector<L>& v, const std::vector<long>& idx) {
  std::vector<L> out;
  out.reserve(idx.size());
  for (long i : idx) {
    if (i < 0 || i >= long(v.size()))
      throw shape_error(detail::cat("take_rows: entry ", i, " is outside a vector of ", v.size()));
    out.push_back(v[std::size_t(i)]);
  }
  return out;
}

}  // namespace biflow::data
