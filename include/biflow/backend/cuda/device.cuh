#pragma once
// Is there a GPU? A clean "no device" (CTest skip) is told apart from a broken one (failure): only
// cudaErrorNoDevice, or an insufficient-driver answer on a machine with no NVIDIA device node at all, counts as
// "no device". Any other error (a driver that fails to initialise, a device busy or lost, a missing kernel module
// with the device node present) throws, so that "skipped" can never hide a broken GPU.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "../../core/errors.hpp"

namespace biflow::gpu {

namespace detail_device {
inline bool nvidia_device_node() {
  std::error_code ec;
  return std::filesystem::exists("/dev/nvidia0", ec) || std::filesystem::exists("/proc/driver/nvidia/version", ec);
}
}  // namespace detail_device

/// Number of usable CUDA devices: 0 when this machine has none; throws biflow::error when a GPU or driver is
/// present but unusable.
inline int device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaSuccess) return n;
  cudaGetLastError();  // clear the error so later calls do not see it
  if (e == cudaErrorNoDevice) return 0;
  if (e == cudaErrorInsufficientDriver && !detail_device::nvidia_device_node()) return 0;
  throw error(detail::cat("CUDA device probe failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                          "); a GPU or driver is present but unusable, which is not 'no device'"));
}

/// One process per GPU: makes current the device of the rank with index `local_rank` among the `local_size` ranks on
/// its node, and returns it. With one visible device (the launcher narrowed CUDA_VISIBLE_DEVICES per process, as
/// `srun --gpus-per-task=1` does) that is device 0; with at least as many devices as local ranks, device
/// local_rank. Fewer devices than ranks is an error (NCCL refuses two ranks on one GPU). Call before the first Cuda
/// tensor or gpu::context() of the process.
inline int use_device_of_local_rank(int local_rank, int local_size) {
  const int n = device_count();
  if (n == 0) throw error("use_device_of_local_rank: this machine has no CUDA device");
  if (local_rank < 0 || local_rank >= local_size)
    throw usage_error(detail::cat("use_device_of_local_rank: local rank ", local_rank, " of ", local_size));
  int d = 0;
  if (n > 1) {
    if (n < local_size)
      throw usage_error(detail::cat(local_size, " ranks on this node but ", n, " visible CUDA devices: start one "
                                    "process per GPU (or set CUDA_VISIBLE_DEVICES to one device per process)"));
    d = local_rank;
  }
  const cudaError_t e = cudaSetDevice(d);
  if (e != cudaSuccess)
    throw error(detail::cat("cudaSetDevice(", d, ") failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
  return d;
}

/// True when the environment says a GPU must be present (BIFLOW_REQUIRE_GPU=1): then no device is a failure.
inline bool gpu_required() {
  const char* v = std::getenv("BIFLOW_REQUIRE_GPU");
  return v && std::string(v) == "1";
}

/// What a GPU-only program returns when device_count() is 0: 77 (CTest's "skipped") with "skipped: no CUDA
/// device" on stdout, or 1 with an error on stderr when BIFLOW_REQUIRE_GPU=1.
inline int no_device_exit(const char* program, const char* hint = "") {
  if (gpu_required()) {
    std::fprintf(stderr, "%s: BIFLOW_REQUIRE_GPU=1 but this machine has no CUDA device\n", program);
    return 1;
  }
  std::printf("skipped: no CUDA device%s\n", hint);
  return 77;
}

}  // namespace biflow::gpu
