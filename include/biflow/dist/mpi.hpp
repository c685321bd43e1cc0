#pragma once
// MPI communicator (Open MPI, MPICH; link biflow::mpi): the engine HPC users launch with `mpirun -np N` or
// `srun`, on one node or many. Not in the umbrella header (it needs <mpi.h>): include <biflow/dist/mpi.hpp>.
//   dist::MpiSession session(argc, argv);   // MPI_Init_thread / MPI_Finalize (once per process)
//   dist::MpiCommunicator comm;             // a duplicate of MPI_COMM_WORLD: biflow's messages never mix with yours
// Errors come back as return codes (MPI_ERRORS_RETURN on the duplicate) and are thrown as communication_error with
// MPI's own message. A rank that dies is the launcher's to handle: mpirun / srun end the job.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/errors.hpp"
#include "communicator.hpp"

namespace biflow::dist {

/// MPI's lifetime in this process: initialises MPI (thread level "funneled": only the main thread calls MPI) unless
/// someone already did, and finalises what it initialised.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv) {
    int done = 0;
    MPI_Initialized(&done);
    if (!done) {
      int provided = 0;
      if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw communication_error("MPI_Init_thread failed: is this process started by mpirun / srun?");
      owns_ = true;
    }
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    int fin = 0;
    MPI_Finalized(&fin);
    if (owns_ && !fin) MPI_Finalize();
  }

 private:
  bool owns_ = false;
};

class MpiCommunicator {
 public:
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) throw usage_error("MpiCommunicator: MPI is not initialised (create a dist::MpiSession first)");
    check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    // The ranks sharing this node (one GPU each: the local rank picks the device).
    MPI_Comm node = MPI_COMM_NULL;
    check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  ~MpiCommunicator() {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// This rank's index among the ranks on its node, and their number (the launcher's placement, whatever it is).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  MPI_Comm native() const { return comm_; }

  template <class T>
  void all_reduce(T* data, long n, Reduce op) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "MpiCommunicator: float or double data");
    for (long done = 0; done < n;) {  // MPI counts are int: chunk very large buffers
      const int m = int(std::min<long>(n - done, INT_MAX));
      check(MPI_Allreduce(MPI_IN_PLACE, data + done, m, type<T>(), MPI_SUM, comm_), "MPI_Allreduce");
      done += m;
    }
    if (op == Reduce::mean && size_ > 1) {
      const T s = T(1) / T(size_);
      for (long i = 0; i < n; ++i) data[i] *= s;
    }
  }
  template <class T>
  void broadcast(T* data, long n, int root) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "MpiCommunicator: float or double data");
    if (root < 0 || root >= size_)
      throw usage_error(detail::cat("MpiCommunicator.broadcast: root ", root, " is not a rank of ", size_));
    for (long done = 0; done < n;) {
      const int m = int(std::min<long>(n - done, INT_MAX));
      check(MPI_Bcast(data + done, m, type<T>(), root, comm_), "MPI_Bcast");
      done += m;
    }
  }
  /// Non-blocking all-reduce (MPI_Iallreduce, in place): data must stay untouched until finish_all_reduces().
  template <class T>
  void start_all_reduce(T* data, long n, Reduce op) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "MpiCommunicator: float or double data");
    for (long done = 0; done < n;) {
      const int m = int(std::min<long>(n - done, INT_MAX));
      MPI_Request r = MPI_REQUEST_NULL;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + done, m, type<T>(), MPI_SUM, comm_, &r), "MPI_Iallreduce");
      requests_.push_back(r);
      pending_.push_back({data + done, m, std::is_same_v<T, float>, op == Reduce::mean});
      done += m;
    }
  }
  /// Lets MPI advance the started all-reduces (Open MPI progresses non-blocking collectives only inside its calls).
  void progress() {
    if (requests_.empty()) return;
    int flag = 0;
    check(MPI_Testall(int(requests_.size()), requests_.data(), &flag, MPI_STATUSES_IGNORE), "MPI_Testall");
  }
  /// Waits for every started all-reduce and applies the means.
  void finish_all_reduces() {
    if (requests_.empty()) return;
    check(MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    for (const Pending& p : pending_) {
      if (!p.mean || size_ == 1) continue;
      if (p.is_float) scale(static_cast<float*>(p.data), p.n);
      else scale(static_cast<double*>(p.data), p.n);
    }
    requests_.clear();
    pending_.clear();
  }
  void barrier() { check(MPI_Barrier(comm_), "MPI_Barrier"); }
  /// Ends every rank of the job (what to do when this rank cannot go on and the others would wait for it).
  [[noreturn]] void abort(int code = 1) {
    MPI_Abort(comm_, code);
    std::abort();
  }

 private:
  template <class T>
  static MPI_Datatype type() {
    return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
  }
  void check(int rc, const char* what) const {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw communication_error(detail::cat(what, " failed on rank ", rank_, " of ", size_, ": ", std::string(msg, len)));
  }
  template <class T>
  void scale(T* data, long n) const {
    const T s = T(1) / T(size_);
    for (long i = 0; i < n; ++i) data[i] *= s;
  }
  struct Pending {
    void* data;
    long n;
    bool is_float, mean;
  };
  std::vector<MPI_Request> requests_;
  std::vector<Pending> pending_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};
static_assert(OverlappingCommunicator<MpiCommunicator>);

}  // namespace biflow::dist
