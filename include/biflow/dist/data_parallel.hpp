#pragma once
// Data-parallel training over a communicator (dist/communicator.hpp): every rank holds the whole model and
// optimiser, takes its shard of each global batch, and after its backward the gradients are averaged over ranks in
// one all-reduce of the flat gradient buffer — before clipping and the NaN/Inf guard, so every rank clips, skips and
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

/// What the gradient reducer has cost so far: wall time inside its all-reduces (on a device backend counted from
/// when the step's queued kernels have finished, so it is the communication alone), calls, values sent.
struct ReduceStats {
  double seconds = 0;
  long calls = 0, values = 0;
  double mean_ms() const { return calls ? 1e3 * seconds / double(calls) : 0.0; }
};

/// Every step of `opt` from now on averages the flat gradient buffer, the loss and the step's metrics over the ranks of `comm` (which
/// must outlive `opt`). Returns the reducer's running cost.
template <class B, Communicator C>
std::shared_ptr<const ReduceStats> reduce_gradients(Optimization<B>& opt, C& comm) {
  auto stats = std::make_shared<ReduceStats>();
  opt.set_gradient_reducer([&comm, stats](Tensor<B>& grads, std::span<double> scalars) {
    synchronize<B>();  // the backward's kernels first: the clock then measures communication only
    const auto t0 = std::chrono::steady_clock::now();
    all_reduce(comm, grads, Reduce::mean);
    comm.all_reduce(scalars.data(), long(scalars.size()), Reduce::mean);  // the loss and the step's metrics
    stats->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++stats->calls;
    stats->values += long(grads.size() + scalars.size());
  });
  return stats;
}

/// Makes a trainer (MleTrainer, ReverseTrainer, vi::ElboTrainer: anything with optimization()) data-parallel:
/// rank 0's `model` (the parameters the trainer updates) goes to every rank now, and every step averages the
/// gradients. Call it on every rank, after building (and loading or resuming) the model and before the first step.
/// Returns the reducer's running cost (ReduceStats).
template <class Trainer, HasParameters M, Communicator C>
std::shared_ptr<const ReduceStats> make_data_parallel(Trainer& trainer, M& model, C& comm) {
  broadcast_state(model, comm);
  return reduce_gradients(trainer.optimization(), comm);
}

}  // namespace biflow::dist
