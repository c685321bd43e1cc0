#pragma once
// Communicators: the collectives data-parallel training needs (rank, size, all-reduce, broadcast, barrier), over an
// engine users already run — MPI (dist/mpi.hpp) — or none (SingleProcess, which costs nothing). A communicator works
// on host arrays of float / double; dist::all_reduce / dist::broadcast lift that to tensors of any backend (a device
// tensor is staged through the host unless the communicator takes device pointers, as an NCCL one would:
// `static constexpr bool device_pointers = true`). Failures throw communication_error naming the operation and rank.
#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../backend/ops.hpp"
#include "../core/errors.hpp"

namespace biflow::dist {

enum class Reduce { sum, mean };

/// What a communicator offers, on host arrays of float and double.
template <class C>
concept Communicator = requires(C& c, float* f, double* d, long n) {
  { c.rank() } -> std::convertible_to<int>;
  { c.size() } -> std::convertible_to<int>;
  c.all_reduce(f, n, Reduce::sum);
  c.all_reduce(d, n, Reduce::sum);
  c.broadcast(f, n, 0);
  c.broadcast(d, n, 0);
  c.barrier();
};

/// A communicator that can start an all-reduce and finish it later (MPI_Iallreduce, NCCL on its own stream), so
/// that data-parallel training overlaps the gradients' all-reduce with the rest of the backward:
///   start_all_reduce(p, n, op)   begins reducing p[0, n) in place; p must not be touched until the finish
///   finish_all_reduces()         completes every started one, in the order started
///   progress()                   (optional) lets the engine advance the started ones (MPI progresses only inside
///                                its calls)
/// Every rank must start the same all-reduces in the same order.
template <class C>
concept OverlappingCommunicator = Communicator<C> && requires(C& c, float* f, double* d, long n) {
  c.start_all_reduce(f, n, Reduce::sum);
  c.start_all_reduce(d, n, Reduce::sum);
  c.finish_all_reduces();
};

/// One process: rank 0 of 1; every collective is the identity (a mean over one rank is the value itself).
class SingleProcess {
 public:
  int rank() const { return 0; }
  int size() const { return 1; }
  template <class T>
  void all_reduce(T*, long, Reduce) {}
  template <class T>
  void broadcast(T*, long, int root) {
    if (root != 0) throw usage_error(detail::cat("SingleProcess.broadcast: root must be 0 (one process), got ", root));
  }
  void barrier() {}
  std::string name() const { return "single process"; }
};
static_assert(Communicator<SingleProcess>);

namespace comm_detail {
template <class C>
inline constexpr bool takes_device_pointers = [] {
  if constexpr (requires { C::device_pointers; }) return bool(C::device_pointers);
  else return false;
}();
template <class B>
inline constexpr bool host_tensors = std::same_as<B, Cpu<typename B::scalar>>;
/// Whether `c` really overlaps (an AnyCommunicator says so at run time).
template <class C>
bool overlaps(const C& c) {
  if constexpr (requires { { c.overlaps() } -> std::convertible_to<bool>; }) return c.overlaps();
  else return OverlappingCommunicator<C>;
}
/// Whether `c` takes device pointers: known at compile time, or asked at run time of a type-erased communicator.
template <class C>
bool passes_device_pointers(const C& c) {
  if constexpr (takes_device_pointers<C>) return true;
  else if constexpr (requires { { c.takes_device_pointers() } -> std::convertible_to<bool>; })
    return c.takes_device_pointers();
  else return false;
}
}  // namespace comm_detail

/// Any communicator behind one type (examples pick the engine at run time: --distributed mpi|none). Holds a
/// reference: the communicator must outlive it.
class AnyCommunicator {
 public:
  template <Communicator C>
    requires(!std::same_as<C, AnyCommunicator>)
  explicit AnyCommunicator(C& c) : impl_(std::make_shared<Impl<C>>(c)) {}
  int rank() const { return impl_->rank(); }
  int size() const { return impl_->size(); }
  void all_reduce(float* p, long n, Reduce op) { impl_->all_reduce(p, n, op); }
  void all_reduce(double* p, long n, Reduce op) { impl_->all_reduce(p, n, op); }
  void broadcast(float* p, long n, int root) { impl_->broadcast(p, n, root); }
  void broadcast(double* p, long n, int root) { impl_->broadcast(p, n, root); }
  void barrier() { impl_->barrier(); }
  /// Whether the communicator behind it takes device pointers (NCCL): then dist::all_reduce / broadcast pass a
  /// device tensor's memory straight through instead of staging it through the host.
  bool takes_device_pointers() const { return impl_->device_pointers(); }
  /// Whether the communicator behind it starts all-reduces without waiting (OverlappingCommunicator). When it does
  /// not, start_all_reduce reduces at once and finish_all_reduces has nothing to do.
  bool overlaps() const { return impl_->overlaps(); }
  void start_all_reduce(float* p, long n, Reduce op) { impl_->start_all_reduce(p, n, op); }
  void start_all_reduce(double* p, long n, Reduce op) { impl_->start_all_reduce(p, n, op); }
  void finish_all_reduces() { impl_->finish_all_reduces(); }
  void progress() { impl_->progress(); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual void all_reduce(float*, long, Reduce) = 0;
    virtual void all_reduce(double*, long, Reduce) = 0;
    virtual void broadcast(float*, long, int) = 0;
    virtual void broadcast(double*, long, int) = 0;
    virtual void barrier() = 0;
    virtual bool device_pointers() const = 0;
    virtual bool overlaps() const = 0;
    virtual void start_all_reduce(float*, long, Reduce) = 0;
    virtual void start_all_reduce(double*, long, Reduce) = 0;
    virtual void finish_all_reduces() = 0;
    virtual void progress() = 0;
  };
  template <class C>
  struct Impl final : Base {
    explicit Impl(C& c) : c(c) {}
    C& c;
    int rank() const override { return c.rank(); }
    int size() const override { return c.size(); }
    void all_reduce(float* p, long n, Reduce op) override { c.all_reduce(p, n, op); }
    void all_reduce(double* p, long n, Reduce op) override { c.all_reduce(p, n, op); }
    void broadcast(float* p, long n, int root) override { c.broadcast(p, n, root); }
    void broadcast(double* p, long n, int root) override { c.broadcast(p, n, root); }
    void barrier() override { c.barrier(); }
    bool device_pointers() const override { return comm_detail::takes_device_pointers<C>; }
    bool overlaps() const override { return OverlappingCommunicator<C>; }
    template <class T>
    void start(T* p, long n, Reduce op) {
      if constexpr (OverlappingCommunicator<C>) c.start_all_reduce(p, n, op);
      else c.all_reduce(p, n, op);
    }
    void start_all_reduce(float* p, long n, Reduce op) override { start(p, n, op); }
    void start_all_reduce(double* p, long n, Reduce op) override { start(p, n, op); }
    void finish_all_reduces() override {
      if constexpr (OverlappingCommunicator<C>) c.finish_all_reduces();
    }
    void progress() override {
      if constexpr (requires { c.progress(); }) c.progress();
    }
  };
  std::shared_ptr<Base> impl_;
};
static_assert(OverlappingCommunicator<AnyCommunicator>);


/// In-place all-reduce of a tensor (every rank passes the same shape).
template <Communicator C, class B>
void all_reduce(C& comm, Tensor<B>& t, Reduce op) {
  if (t.size() == 0 || comm.size() == 1) return;
  if (comm_detail::host_tensors<B> || comm_detail::passes_device_pointers(comm)) {
    comm.all_reduce(t.data(), long(t.size()), op);
  } else {  // staged through the host
    HostMatrix<typename B::scalar> h = to_host(t);
    comm.all_reduce(h.data(), long(h.size()), op);
    t = from_host<B>(h);
  }
}
/// Root's tensor to every rank (every rank passes the same shape).
template <Communicator C, class B>
void broadcast(C& comm, Tensor<B>& t, int root = 0) {
  if (t.size() == 0 || comm.size() == 1) return;
  if (comm_detail::host_tensors<B> || comm_detail::passes_device_pointers(comm)) {
    comm.broadcast(t.data(), long(t.size()), root);
  } else {
    HostMatrix<typename B::scalar> h = to_host(t);
    comm.broadcast(h.data(), long(h.size()), root);
    t = from_host<B>(h);
  }
}

}  // namespace biflow::dist
