#pragma once
// Who am I in a multi-process job, read from the launcher's environment: rank, world size, local rank (index among
// the ranks on this node: the GPU to use) and local size. Needed where no MPI library is linked — an NCCL job
// bootstrapped through a unique-id file (dist/nccl.cuh) — and for choosing the device before any communicator
// exists. Launchers, in the order they are looked for:
//   Open MPI (mpirun)   OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE
//   SLURM (srun)        SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_NTASKS_PER_NODE (first number)
//   MPICH / Hydra       PMI_RANK / PMI_SIZE / MPI_LOCALRANKID / MPI_LOCALNRANKS
//   torchrun-style      RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE
// None of them: one process (rank 0 of 1). A variable that is set but is not a number, or names a rank outside the
// world, is an error naming the variable and its value.
#include <cstdlib>
#include <functional>
#include <string>

#include "../core/errors.hpp"

namespace biflow::dist {

struct LaunchInfo {
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
  std::string launcher = "none";  ///< which launcher's variables were found
  /// An identifier of this job when the launcher gives one (SLURM_JOB_ID, Open MPI's job id), else empty.
  std::string job_id;
};

namespace launch_detail {
inline int number(const std::function<const char*(const char*)>& get, const char* name, int fallback) {
  const char* v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  // SLURM_NTASKS_PER_NODE may read "2(x3)" on uneven placements: its first number is this node's count.
  if (end == v || n < 0 || n > 1 << 24 || (*end && *end != '(' && *end != ','))
    throw usage_error(detail::cat("launch environment: ", name, "='", v, "' is not a rank or process count"));
  return int(n);
}
}  // namespace launch_detail

/// Reads the launch from `get` (std::getenv by default; tests pass their own).
inline LaunchInfo launch_from_environment(std::function<const char*(const char*)> get = [](const char* n) {
  return static_cast<const char*>(std::getenv(n));
}) {
  struct Names {
    const char *launcher, *rank, *size, *local_rank, *local_size, *job;
  };
  static constexpr Names known[] = {
      {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
       "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_MCA_ess_base_jobid"},
      {"SLURM", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_ID"},
      {"MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "PMI_JOBID"},
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID"},
  };
  for (const Names& n : known) {
    if (!get(n.rank) || !get(n.size)) continue;
    LaunchInfo l;
    l.launcher = n.launcher;
    l.rank = launch_detail::number(get, n.rank, 0);
    l.size = launch_detail::number(get, n.size, 1);
    l.local_rank = launch_detail::number(get, n.local_rank, l.rank);
    l.local_size = launch_detail::number(get, n.local_size, l.size);
    if (const char* j = get(n.job)) l.job_id = j;
    if (l.size < 1 || l.rank >= l.size || l.local_size < 1 || l.local_rank >= l.local_size || l.local_size > l.size)
      throw usage_error(detail::cat("launch environment (", n.launcher, "): rank ", l.rank, " of ", l.size,
                                    ", local rank ", l.local_rank, " of ", l.local_size, " is not a valid placement"));
    return l;
  }
  return {};
}

}  // namespace biflow::dist
