#pragma once
// --distributed none|mpi|nccl for the examples: starts MPI when asked (the example must link biflow::mpi, which
// defines BIFLOW_HAS_MPI), or, in a Cuda build linked with biflow::nccl (BIFLOW_HAS_NCCL), picks this rank's GPU by
// its local rank and joins NCCL (bootstrapped through MPI when linked, else through a unique-id file: --nccl-id-file,
// by default /tmp/biflow-nccl-<job id>.id, one node; name a shared path for several). Offers the communicator behind
// one type and silences stdout on every rank but 0 (errors still reach stderr from any rank). Construct it first:
// before anything prints or touches the GPU.
#include <biflow/dist/communicator.hpp>
#include <biflow/dist/launch.hpp>
#include <cstdio>
#include <optional>
#include <string>

#if defined(BIFLOW_HAS_MPI)
#include <biflow/dist/mpi.hpp>
#endif
#if defined(__CUDACC__) && defined(BIFLOW_HAS_NCCL)
#include <biflow/dist/nccl.cuh>
#define BIFLOW_EXAMPLE_NCCL 1
#endif

#include "args.hpp"

namespace examples {

class Distributed {
 public:
  Distributed(const Args& a, int& argc, char**& argv, const char* program) : how_(a.str("distributed", "none")) {
    if (how_ != "none" && how_ != "mpi" && how_ != "nccl")
      a.fail("--distributed must be none, mpi or nccl, got '" + how_ + "'");
#if defined(BIFLOW_HAS_MPI)
    if (how_ == "mpi" || how_ == "nccl") {
      session_.emplace(argc, argv);
      mpi_.emplace();
      if (how_ == "mpi") comm_.emplace(*mpi_);
    }
#else
    (void)argc;
    (void)argv;
    if (how_ == "mpi")
      a.fail(std::string("--distributed mpi: this ") + program +
             " was built without MPI (install libopenmpi-dev and reconfigure)");
#endif
    if (how_ == "nccl") {
#if defined(BIFLOW_EXAMPLE_NCCL)
      const biflow::dist::NcclOptions o{.timeout_seconds = a.real("nccl-timeout", 600)};
#if defined(BIFLOW_HAS_MPI)
      biflow::gpu::use_device_of_local_rank(mpi_->local_rank(), mpi_->local_size());
      nccl_.emplace(*mpi_, o);
#else
      const biflow::dist::LaunchInfo who = biflow::dist::launch_from_environment();
      biflow::gpu::use_device_of_local_rank(who.local_rank, who.local_size);
      const std::string file = a.str("nccl-id-file", "/tmp/biflow-nccl-" + (who.job_id.empty() ? "job" : who.job_id) +
                                                         ".id");
      nccl_.emplace(file, who, o);
#endif
      comm_.emplace(*nccl_);
#else
      a.fail(std::string("--distributed nccl: this ") + program +
             " is not a Cuda build linked with NCCL (use latent_biflow_cuda, built where nvcc and NCCL exist)");
#endif
    }
    if (!comm_) comm_.emplace(single_);
    if (comm_->rank() != 0 && !std::freopen("/dev/null", "w", stdout))
      std::fprintf(stderr, "%s: rank %d cannot silence its stdout\n", program, comm_->rank());
  }
  Distributed(const Distributed&) = delete;  // the communicator refers to members
  Distributed& operator=(const Distributed&) = delete;
  biflow::dist::AnyCommunicator& comm() { return *comm_; }
  const std::string& how() const { return how_; }
  bool lead() const { return comm_->rank() == 0; }
  /// Where progress lines go: stderr on rank 0, nowhere on the others.
  std::FILE* progress_stream() const {
    static std::FILE* const quiet = std::fopen("/dev/null", "w");
    return lead() || !quiet ? stderr : quiet;
  }

 private:
  std::string how_;
  biflow::dist::SingleProcess single_;
#if defined(BIFLOW_HAS_MPI)
  std::optional<biflow::dist::MpiSession> session_;  // declared before the communicator: finalised after it
  std::optional<biflow::dist::MpiCommunicator> mpi_;
#endif
#if defined(BIFLOW_EXAMPLE_NCCL)
  std::optional<biflow::dist::NcclCommunicator> nccl_;  // after MPI: destroyed before it
#endif
  std::optional<biflow::dist::AnyCommunicator> comm_;
};

}  // namespace examples
