# biflow::mpi — data-parallel training over MPI (include <biflow/dist/mpi.hpp>): biflow::biflow + MPI's C bindings
# (Open MPI or MPICH, found by FindMPI) and BIFLOW_HAS_MPI=1. Used by the package config and by biflow's own build.
# Set _biflow_mpi_global to GLOBAL to make the target visible above the defining directory (add_subdirectory use).
if(NOT TARGET biflow::mpi)
  if(NOT TARGET MPI::MPI_CXX)
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(TARGET MPI::MPI_CXX)
    add_library(biflow::mpi INTERFACE IMPORTED ${_biflow_mpi_global})
    target_link_libraries(biflow::mpi INTERFACE biflow::biflow MPI::MPI_CXX)
    target_compile_definitions(biflow::mpi INTERFACE BIFLOW_HAS_MPI=1)
  endif()
endif()
