#!/usr/bin/env bash
# Installs biflow's build dependencies from Debian packages when they are missing (needs root or sudo).
set -euo pipefail
need=()
[ -f /usr/include/eigen3/Eigen/Core ] || need+=(libeigen3-dev)
[ -f /usr/include/doctest/doctest.h ] || need+=(doctest-dev)
[ -f /usr/include/benchmark/benchmark.h ] || need+=(libbenchmark-dev)
[ -f /usr/include/stb/stb_image_write.h ] || need+=(libstb-dev)
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
# Serial OpenBLAS and BLIS: candidates for the Cpu backend's GEMM engine (BIFLOW_CPU_BLAS=auto measures them against
# Eigen at configure time and keeps the faster; cmake/biflowCpuBlas.cmake).
arch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
[ -f "/usr/include/$arch/openblas-serial/cblas.h" ] || need+=(libopenblas-serial-dev)
[ -f "/usr/include/$arch/blis-serial/cblas.h" ] || need+=(libblis-serial-dev)
# MPI for data-parallel training (biflow::mpi) and its tests; not needed by the demo (BIFLOW_DEPS_NO_MPI=1).
if [ -z "${BIFLOW_DEPS_NO_MPI:-}" ]; then
  command -v mpicxx >/dev/null || need+=(libopenmpi-dev)
  command -v mpirun >/dev/null || need+=(openmpi-bin)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
