# biflow::cuda — biflow's CUDA backend for .cu translation units: biflow::biflow + cuBLAS + the CUDA runtime,
# C++20 for CUDA sources whose target sets no CUDA_STANDARD of its own, --expt-relaxed-constexpr (the elementwise
# functors call std:: math in device code) and EIGEN_NO_CUDA (Eigen stays on the host). No architectures and no
# warning flags: those are the consumer's choice. Used by the package config and by biflow's own build.
# Set _biflow_cuda_global to GLOBAL to make the target visible above the defining directory (add_subdirectory use).
if(NOT TARGET biflow::cuda)
  if(NOT TARGET CUDA::cublas)
    find_package(CUDAToolkit QUIET)
  endif()
  if(TARGET CUDA::cublas AND TARGET CUDA::cudart)
    add_library(biflow::cuda INTERFACE IMPORTED ${_biflow_cuda_global})
    target_link_libraries(biflow::cuda INTERFACE biflow::biflow CUDA::cublas CUDA::cudart)
    target_compile_options(biflow::cuda INTERFACE
      "$<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<NOT:$<BOOL:$<TARGET_PROPERTY:CUDA_STANDARD>>>>:-std=c++20>"
      "$<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>")
    target_compile_definitions(biflow::cuda INTERFACE "$<$<COMPILE_LANGUAGE:CUDA>:EIGEN_NO_CUDA>")
  endif()
endif()
