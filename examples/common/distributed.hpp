#pragma once
// --distributed none|mpi for the examples: starts MPI when asked (the example must link biflow::mpi, which defines
// BIFLOW_HAS_MPI), offers the communicator behind one type, and silences stdout on every rank but 0 (errors still
// reach stderr from any rank). Construct it before anything prints.
#include <biflow/dist/communicator.hpp>
#include <cstdio>
#include <optional>
#include <string>

#if defined(BIFLOW_HAS_MPI)
#include <biflow/dist/mpi.hpp>
#endif

#include "args.hpp"

namespace examples {

class Distributed {
 public:
  Distributed(const Args& a, int& argc, char**& argv, const char* program) : how_(a.str("distributed", "none")) {
    if (how_ != "none" && how_ != "mpi") a.fail("--distributed must be none or mpi, got '" + how_ + "'");
#if defined(BIFLOW_HAS_MPI)
    if (how_ == "mpi") {
      session_.emplace(argc, argv);
      mpi_.emplace();
      comm_.emplace(*mpi_);
    }
#else
    (void)argc;
    (void)argv;
    if (how_ == "mpi")
      a.fail(std::string("--distributed mpi: this ") + program +
             " was built without MPI (install libopenmpi-dev and reconfigure)");
#endif
    if (!comm_) comm_.emplace(single_);
    if (comm_->rank() != 0 && !std::freopen("/dev/null", "w", stdout))
      std::fprintf(stderr, "%s: rank %d cannot silence its stdout\n", program, comm_->rank());
  }
  Distributed(const Distributed&) = delete;  // the communicator refers to members
  Distributed& operator=(const Distributed&) = delete;
  biflow::dist::AnyCommunicator& comm() { return *comm_; }
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
  std::optional<biflow::dist::AnyCommunicator> comm_;
};

}  // namespace examples
