#pragma once
// NCCL communicator for Cuda ranks (link biflow::nccl; one process per GPU, the device chosen before construction:
// gpu::use_device_of_local_rank, or CUDA_VISIBLE_DEVICES set per process by the launcher). Collectives run on the current gpu::Context's stream,
// so they follow the kernels that wrote the tensors, and return when done. Device pointers go to NCCL as they are
// (`device_pointers`: dist::all_reduce / broadcast pass a Cuda tensor's memory straight through); host arrays (the
// loss, buffers, checks) are staged through a small device scratch buffer.
//   dist::MpiSession session(argc, argv);
//   dist::MpiCommunicator mpi;                       // bootstrap: rank 0's ncclUniqueId reaches every rank
//   dist::NcclCommunicator nccl(mpi, {.timeout_seconds = 600});
// or, with no MPI linked (any launcher: mpirun, srun, torchrun-style variables; a file on a shared filesystem):
//   const dist::LaunchInfo who = dist::launch_from_environment();
//   gpu::use_device_of_local_rank(who.local_rank, who.local_size);
//   dist::NcclCommunicator nccl("/shared/job-42.ncclid", who);
// Errors throw communication_error with NCCL's message. A collective that has not finished after timeout_seconds
// (a peer died or hangs) aborts the communicator (ncclCommAbort) and throws: NCCL has no timeout of its own, so the
// wait polls the stream and ncclCommGetAsyncError.
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "../backend/cuda/ops.cuh"
#include "communicator.hpp"
#include "launch.hpp"

namespace biflow::dist {

struct NcclOptions {
  double timeout_seconds = 0;  ///< 0: wait forever
};

class NcclCommunicator {
 public:
  static constexpr bool device_pointers = true;

  /// Bootstraps through a host communicator with the same ranks (MPI): rank 0 creates the unique id, every rank
  /// receives it and joins.
  template <Communicator Host>
    requires(!std::same_as<Host, NcclCommunicator>)
  explicit NcclCommunicator(Host& host, NcclOptions o = {}) : opt_(o) {
    ncclUniqueId id;
    if (host.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    // 128 bytes as 128 doubles (each byte a small integer: exact on every transport).
    std::vector<double> bytes(sizeof(id.internal));
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = double(static_cast<unsigned char>(id.internal[i]));
    host.broadcast(bytes.data(), long(bytes.size()), 0);
    for (std::size_t i = 0; i < bytes.size(); ++i) id.internal[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]));
    init(id, host.rank(), host.size());
  }
  /// Bootstraps through a file all ranks can read (on a filesystem shared by the nodes), with no MPI linked: rank 0
  /// writes its unique id to `id_file` (beside it, then renamed: never seen half-written), the other ranks wait for
  /// it (timeout_seconds, or 300 s when that is 0), and rank 0 removes it once every rank has joined. Rank and world
  /// size come from the launcher (dist::launch_from_environment()). Use a fresh path per job: the file also holds
  /// the launcher's job id and the world size, and a reader skips a file that does not match (a stale one).
  NcclCommunicator(const std::string& id_file, const LaunchInfo& who, NcclOptions o = {}) : opt_(o) {
    rank_ = who.rank;
    size_ = who.size;
    ncclUniqueId id;
    if (who.rank == 0) {
      check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      const std::string tmp = id_file + ".writing";
      {
        std::ofstream f(tmp, std::ios::trunc);
        f << "biflow-nccl-id 1\n" << (who.job_id.empty() ? "-" : who.job_id) << "\n" << who.size << "\n";
        for (unsigned char c : id.internal) f << int(c) << ' ';
        f << "\n";
        if (!f.flush())
          throw communication_error(detail::cat("NcclCommunicator: cannot write the unique-id file ", tmp));
      }
      if (std::rename(tmp.c_str(), id_file.c_str()) != 0)
        throw communication_error(detail::cat("NcclCommunicator: cannot rename ", tmp, " to ", id_file));
    } else {
      const double limit = opt_.timeout_seconds > 0 ? opt_.timeout_seconds : 300.0;
      const auto start = std::chrono::steady_clock::now();
      while (!read_id_file(id_file, who, id)) {
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > limit)
          throw communication_error(detail::cat("NcclCommunicator: rank ", who.rank, " of ", who.size, " waited ",
                                                limit, " s for rank 0's unique-id file ", id_file,
                                                " (missing, or from another job: job id / world size differ)"));
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    init(id, who.rank, who.size);  // collective: returns once every rank has joined (and read the file)
    if (who.rank == 0) std::remove(id_file.c_str());
  }
  /// Joins with a unique id obtained elsewhere.
  NcclCommunicator(const ncclUniqueId& id, int rank, int size, NcclOptions o = {}) : opt_(o) { init(id, rank, size); }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() {
    if (scratch_) cudaFree(scratch_);
    if (event_) cudaEventDestroy(event_);
    if (comm_stream_) cudaStreamDestroy(comm_stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  ncclComm_t native() const { return comm_; }

  template <class T>
  void all_reduce(T* data, long n, Reduce op) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "NcclCommunicator: float or double data");
    if (n <= 0) return;
    const ncclRedOp_t nop = op == Reduce::mean ? ncclAvg : ncclSum;
    on_device(data, n, [&](T* d) {
      return ncclAllReduce(d, d, std::size_t(n), type<T>(), nop, comm_, gpu::context().stream());
    }, "ncclAllReduce");
  }
  template <class T>
  void broadcast(T* data, long n, int root) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "NcclCommunicator: float or double data");
    if (root < 0 || root >= size_)
      throw usage_error(detail::cat("NcclCommunicator.broadcast: root ", root, " is not a rank of ", size_));
    if (n <= 0) return;
    on_device(data, n, [&](T* d) {
      return ncclBroadcast(d, d, std::size_t(n), type<T>(), root, comm_, gpu::context().stream());
    }, "ncclBroadcast");
  }
  void barrier() {
    float one = 1;
    all_reduce(&one, 1, Reduce::sum);
  }
  /// Starts an all-reduce of device memory on the communicator's own stream, after the work queued so far on the
  /// compute stream (which wrote the data) and concurrently with what is queued next: data-parallel training
  /// overlaps the gradient buckets' all-reduce with the rest of the backward. Host memory is reduced at once.
  template <class T>
  void start_all_reduce(T* data, long n, Reduce op) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "NcclCommunicator: float or double data");
    if (n <= 0) return;
    if (!is_device(data)) return all_reduce(data, n, op);
    gpu::check(cudaEventRecord(event_, gpu::context().stream()), "cudaEventRecord");
    gpu::check(cudaStreamWaitEvent(comm_stream_, event_, 0), "cudaStreamWaitEvent");
    check(ncclAllReduce(data, data, std::size_t(n), type<T>(), op == Reduce::mean ? ncclAvg : ncclSum, comm_,
                        comm_stream_), "ncclAllReduce (started)");
    started_ = true;
  }
  /// Waits for every started all-reduce (watching NCCL's errors and the timeout).
  void finish_all_reduces() {
    if (!started_) return;
    started_ = false;
    wait("ncclAllReduce (started)", comm_stream_);
  }

 private:
  void init(const ncclUniqueId& id, int rank, int size) {
    rank_ = rank;
    size_ = size;
    check(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
    gpu::check(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    gpu::check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  /// The id from rank 0's file, if it exists and belongs to this job (same job id when both know one, same size).
  static bool read_id_file(const std::string& path, const LaunchInfo& who, ncclUniqueId& id) {
    std::ifstream f(path);
    std::string magic, version, job;
    int size = 0;
    if (!(f >> magic >> version >> job >> size) || magic != "biflow-nccl-id" || version != "1") return false;
    if (size != who.size || (!who.job_id.empty() && job != "-" && job != who.job_id)) return false;
    for (char& c : id.internal) {
      int v = -1;
      if (!(f >> v) || v < 0 || v > 255) return false;
      c = static_cast<char>(static_cast<unsigned char>(v));
    }
    return true;
  }
  template <class T>
  static ncclDataType_t type() {
    return std::is_same_v<T, float> ? ncclFloat32 : ncclFloat64;
  }
  static bool is_device(const void* p) {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
      cudaGetLastError();  // a plain host pointer on older runtimes
      return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
  }
  /// Runs the collective on device memory: data itself, or the scratch buffer holding a copy of host data.
  template <class T, class F>
  void on_device(T* data, long n, F&& collective, const char* what) {
    const cudaStream_t s = gpu::context().stream();
    if (is_device(data)) {
      check(collective(data), what);
      wait(what);
      return;
    }
    const std::size_t bytes = std::size_t(n) * sizeof(T);
    if (bytes > scratch_bytes_) {
      if (scratch_) gpu::check(cudaFree(scratch_), "cudaFree");
      gpu::check(cudaMalloc(&scratch_, bytes), "cudaMalloc (NCCL scratch)");
      scratch_bytes_ = bytes;
    }
    T* d = static_cast<T*>(scratch_);
    gpu::check(cudaMemcpyAsync(d, data, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
    check(collective(d), what);
    gpu::check(cudaMemcpyAsync(data, d, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
    wait(what);
  }
  /// Waits for the stream (the compute stream by default), watching NCCL's asynchronous errors and the timeout.
  void wait(const char* what, cudaStream_t s = nullptr) {
    if (!s) s = gpu::context().stream();
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t q = cudaStreamQuery(s);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) gpu::check(q, what);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        throw communication_error(detail::cat(what, " failed on rank ", rank_, " of ", size_, ": ",
                                              ncclGetErrorString(async)));
      }
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (opt_.timeout_seconds > 0 && waited > opt_.timeout_seconds) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        throw communication_error(detail::cat(what, " on rank ", rank_, " of ", size_, " did not finish within ",
                                              opt_.timeout_seconds, " s (a peer died or stalls); communicator aborted"));
      }
      std::this_thread::yield();
    }
  }
  void check(ncclResult_t r, const char* what) const {
    if (r == ncclSuccess) return;
    throw communication_error(detail::cat(what, " failed on rank ", rank_, " of ", size_, ": ", ncclGetErrorString(r)));
  }

  NcclOptions opt_;
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  void* scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
  cudaStream_t comm_stream_ = nullptr;  // started all-reduces run here, beside the compute stream
  cudaEvent_t event_ = nullptr;
  bool started_ = false;
};
static_assert(OverlappingCommunicator<NcclCommunicator>);

}  // namespace biflow::dist
