#pragma once
// Data-parallel training over a communicator (dist/communicator.hpp): every rank holds the whole model and
// optimiser, takes its shard of each global batch, and after its backward the gradients are averaged over ranks in
// all-reduces of the flat gradient buffer — in buckets that start while the backward is still running, where the
// communicator and the model allow — before clipping and the NaN/Inf guard, so every rank clips, skips and
// steps alike and the optimiser and EMA states stay identical without ever being sent. With equal shards the mean of
// the ranks' mean gradients is the mean gradient of the global batch: a run on N ranks at global batch B follows the
// one-process run at batch B up to the order of floating-point sums.
//   make_data_parallel(trainer, model, comm)  rank 0's parameters and buffers to all, then averaged gradients
//   shard(global_batch, rank, size)           the rows of each global batch this rank takes
// Draw the global batch from a sampler seeded alike on every rank (data::BatchSampler, or the same Rng) and take the
// shard: the sampler state is then independent of the world size, so a checkpoint resumes on any number of ranks.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/buffer.hpp"
#include "../train/optimization.hpp"
#include "communicator.hpp"

namespace biflow::dist {

/// Rows [begin, end) of a global batch.
struct Shard {
  long begin = 0, end = 0;
  long size() const { return end - begin; }
};
/// The contiguous, equal shard of a global batch of n rows that `rank` of `size` ranks takes.
inline Shard shard(long global_batch, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size)
    throw usage_error(detail::cat("dist::shard: rank ", rank, " of ", size, " ranks does not exist"));
  if (global_batch < size || global_batch % size != 0)
    throw usage_error(detail::cat("data-parallel training: the global batch (", global_batch, " rows) must split into ",
                                  size, " equal shards (each rank's mean then weighs alike); use a multiple of ",
                                  size));
  const long per = global_batch / size;
  return {long(rank) * per, long(rank + 1) * per};
}

/// Rank `root`'s parameters and buffers to every rank (identical initialisation; every rank built the same model).
template <HasParameters M, Communicator C>
void broadcast_state(M& model, C& comm, int root = 0) {
  model.visit_parameters([&](const std::string&, auto& p) { broadcast(comm, p.value, root); }, "");
  visit_buffers_of(model, [&](const std::string& name, const Buffer& b) {
    double n = double(b.values.size());
    comm.broadcast(&n, 1, root);
    if (long(n) != long(b.values.size()))
      throw usage_error(detail::cat("dist::broadcast_state: buffer '", name, "' holds ", b.values.size(),
                                    " values on rank ", comm.rank(), " but ", long(n), " on rank ", root,
                                    ": the ranks built different models"));
    std::vector<double> v = b.values;
    comm.broadcast(v.data(), long(v.size()), root);
    if (v != b.values) b.assign(v);
  }, "");
}

/// The sum over ranks of each rank's largest |θ − θ_root| over all parameter entries: 0 when every rank holds the
/// same parameters (a check for tests and long runs; collective: every rank must call it).
template <HasParameters M, Communicator C>
double parameter_divergence(M& model, C& comm, int root = 0) {
  double worst = 0;
  model.visit_parameters([&](const std::string&, auto& p) {
    const auto mine = to_host(p.value);
    auto theirs = mine;
    comm.broadcast(theirs.data(), long(theirs.size()), root);
    for (long i = 0; i < long(mine.size()); ++i)
      worst = std::max(worst, std::abs(double(mine.data()[i]) - double(theirs.data()[i])));
  }, "");
  comm.all_reduce(&worst, 1, Reduce::sum);
  return worst;
}

/// How data-parallel training reduces the gradients.
struct DataParallelOptions {
  /// Start each bucket's all-reduce during the backward, as soon as the backward has finished its gradients, when
  /// the communicator can (MPI's non-blocking collectives; NCCL on its own stream) and the model's backward reports
  /// them (Sequential, Repeat, TarFlow, ReverseModel). Off: one pass of all-reduces after the backward.
  bool overlap = true;
  /// Bucket size in MB of gradient values: smaller buckets start earlier; each costs one collective's latency.
  double bucket_mb = 4.0;
};

/// What the gradient reducer has cost so far: wall time in the reducer after the backward (on a device backend
/// counted from when the step's queued kernels have finished) — with overlap, the communication the backward did
/// not hide —, calls, values sent, buckets started, and of them those started during the backward.
struct ReduceStats {
  double seconds = 0;
  long calls = 0, values = 0, buckets = 0, early_buckets = 0;
  double mean_ms() const { return calls ? 1e3 * seconds / double(calls) : 0.0; }
};

namespace dp_detail {
/// The flat gradient buffer cut into fixed buckets. The backward declares ranges final (GradientReady); a bucket's
/// all-reduce starts once all of it is, and the finish starts the rest (highest bucket first) and waits for all.
/// The backward declares ranges in the same order on every rank, so every rank starts the same buckets in the same
/// order, as collectives require.
template <class B, class C>
class Buckets {
 public:
  Buckets(C& comm, long bucket_values, std::shared_ptr<ReduceStats> stats)
      : comm_(comm), size_(std::max(1L, bucket_values)), stats_(std::move(stats)) {}

  void ready(Tensor<B>& grads, long begin, long end) {
    layout(grads);
    begin = std::max(0L, begin);
    end = std::min(n_, end);
    // Only the part not declared before counts (a composite may report a child after the child's own parts).
    long at = begin;
    for (const auto& [b, e] : covered_) {
      if (e <= at) continue;
      if (b >= end) break;
      if (b > at) add(grads, at, b);
      at = std::max(at, e);
    }
    if (at < end) add(grads, at, end);
    merge(begin, end);
    if constexpr (requires { comm_.progress(); }) comm_.progress();
  }
  void finish(Tensor<B>& grads) {
    layout(grads);
    for (long k = long(started_.size()); k-- > 0;)
      if (!started_[std::size_t(k)]) start(grads, k, false);
    comm_.finish_all_reduces();
    std::fill(count_.begin(), count_.end(), 0L);
    std::fill(started_.begin(), started_.end(), false);
    covered_.clear();
  }

 private:
  void layout(Tensor<B>& grads) {
    if (grads.data() == base_ && long(grads.size()) == n_) return;
    base_ = grads.data();
    n_ = long(grads.size());
    const long nb = (n_ + size_ - 1) / size_;
    count_.assign(std::size_t(nb), 0L);
    started_.assign(std::size_t(nb), false);
    covered_.clear();
  }
  long lo(long k) const { return k * size_; }
  long hi(long k) const { return std::min(n_, (k + 1) * size_); }
  void add(Tensor<B>& grads, long b, long e) {
    for (long k = b / size_; k < long(count_.size()) && lo(k) < e; ++k) {
      count_[std::size_t(k)] += std::min(e, hi(k)) - std::max(b, lo(k));
      if (count_[std::size_t(k)] == hi(k) - lo(k) && !started_[std::size_t(k)]) start(grads, k, true);
    }
  }
  void start(Tensor<B>& grads, long k, bool early) {
    started_[std::size_t(k)] = true;
    comm_.start_all_reduce(grads.data() + lo(k), hi(k) - lo(k), Reduce::mean);
    ++stats_->buckets;
    if (early) ++stats_->early_buckets;
  }
  void merge(long b, long e) {
    covered_.emplace_back(b, e);
    std::sort(covered_.begin(), covered_.end());
    std::size_t w = 0;
    for (std::size_t i = 1; i < covered_.size(); ++i) {
      if (covered_[i].first <= covered_[w].second) covered_[w].second = std::max(covered_[w].second, covered_[i].second);
      else covered_[++w] = covered_[i];
    }
    covered_.resize(w + 1);
  }

  C& comm_;
  long size_;
  std::shared_ptr<ReduceStats> stats_;
  const typename B::scalar* base_ = nullptr;
  long n_ = 0;
  std::vector<long> count_;
  std::vector<bool> started_;
  std::vector<std::pair<long, long>> covered_;  // declared ranges this step, sorted and disjoint
};
}  // namespace dp_detail

/// Every step of `opt` from now on averages the flat gradient buffer, the loss and the step's metrics over the
/// ranks of `comm` (which must outlive `opt`), in buckets overlapped with the backward where possible
/// (DataParallelOptions). Returns the reducer's running cost.
template <class B, Communicator C>
std::shared_ptr<const ReduceStats> reduce_gradients(Optimization<B>& opt, C& comm, DataParallelOptions o = {}) {
  auto stats = std::make_shared<ReduceStats>();
  opt.set_gradient_ready_hook({});
  // The scalars follow the gradients in one more (small) all-reduce; the clock measures communication only: the
  // backward's queued kernels are waited for first.
  auto finish_scalars = [&comm, stats](Tensor<B>& grads, std::span<double> scalars, auto t0) {
    comm.all_reduce(scalars.data(), long(scalars.size()), Reduce::mean);  // the loss and the step's metrics
    stats->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++stats->calls;
    stats->values += long(grads.size() + scalars.size());
  };
  if constexpr (OverlappingCommunicator<C>) {
    const bool direct = comm_detail::host_tensors<B> || comm_detail::passes_device_pointers(comm);
    if (o.overlap && direct && comm_detail::overlaps(comm)) {
      const long values = long(o.bucket_mb * 1e6 / double(sizeof(typename B::scalar)));
      auto buckets = std::make_shared<dp_detail::Buckets<B, C>>(comm, values, stats);
      opt.set_gradient_ready_hook([buckets](Tensor<B>& g, long b, long e) { buckets->ready(g, b, e); });
      opt.set_gradient_reducer([buckets, stats, finish_scalars](Tensor<B>& grads, std::span<double> scalars) {
        synchronize<B>();
        const auto t0 = std::chrono::steady_clock::now();
        buckets->finish(grads);
        finish_scalars(grads, scalars, t0);
      });
      return stats;
    }
  }
  opt.set_gradient_reducer([&comm, stats, finish_scalars](Tensor<B>& grads, std::span<double> scalars) {
    synchronize<B>();
    const auto t0 = std::chrono::steady_clock::now();
    all_reduce(comm, grads, Reduce::mean);
    ++stats->buckets;
    finish_scalars(grads, scalars, t0);
  });
  return stats;
}

/// Makes a trainer (MleTrainer, ReverseTrainer, vi::ElboTrainer: anything with optimization()) data-parallel:
/// rank 0's `model` (the parameters the trainer updates) goes to every rank now, and every step averages the
/// gradients. Call it on every rank, after building (and loading or resuming) the model and before the first step.
/// Returns the reducer's running cost (ReduceStats).
template <class Trainer, HasParameters M, Communicator C>
std::shared_ptr<const ReduceStats> make_data_parallel(Trainer& trainer, M& model, C& comm, DataParallelOptions o = {}) {
  broadcast_state(model, comm);
  return reduce_gradients(trainer.optimization(), comm, o);
}

}  // namespace biflow::dist
