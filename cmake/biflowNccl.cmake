# biflow::nccl — data-parallel training across GPUs (include <biflow/dist/nccl.cuh> in .cu files): biflow::cuda +
# NCCL (nccl.h and libnccl from the CUDA toolkit's folders or NCCL_ROOT). Used by the package config and by biflow's
# own build. Set _biflow_nccl_global to GLOBAL to make the target visible above the defining directory.
if(NOT TARGET biflow::nccl)
  if(TARGET biflow::cuda)
    find_path(BIFLOW_NCCL_INCLUDE nccl.h HINTS ${NCCL_ROOT}/include ${CUDAToolkit_INCLUDE_DIRS})
    find_library(BIFLOW_NCCL_LIBRARY nccl HINTS ${NCCL_ROOT}/lib ${NCCL_ROOT}/lib64 ${CUDAToolkit_LIBRARY_DIR})
    if(BIFLOW_NCCL_INCLUDE AND BIFLOW_NCCL_LIBRARY)
      add_library(biflow::nccl INTERFACE IMPORTED ${_biflow_nccl_global})
      target_include_directories(biflow::nccl INTERFACE ${BIFLOW_NCCL_INCLUDE})
      target_link_libraries(biflow::nccl INTERFACE biflow::cuda ${BIFLOW_NCCL_LIBRARY})
      target_compile_definitions(biflow::nccl INTERFACE BIFLOW_HAS_NCCL)
    endif()
  endif()
endif()
