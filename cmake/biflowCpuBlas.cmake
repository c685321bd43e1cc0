# biflow::cpu_blas — the Cpu backend's GEMMs through a CBLAS (OpenBLAS or BLIS, their *serial* builds: biflow owns
# the threads and gives each thread a block of rows, so a threaded BLAS would oversubscribe the cores) instead of
# Eigen, from the size where the BLAS is faster. Chosen by BIFLOW_CPU_BLAS:
#   eigen            Eigen for every GEMM
#   openblas | blis  that library (an error when it is not found) for products with m·n·k at or above its crossover
#   auto             (default) builds benchmarks/gemm_engines.cpp against each BLAS found, runs it, and takes the
#                    one that beats Eigen by more than 5% on the most of biflow's GEMM shapes, from its crossover up;
#                    Eigen when none does or none is found. The result is cached: delete
#                    BIFLOW_CPU_BLAS_PROBED from the cache (or the build folder) to measure again.
# Defines biflow::cpu_blas (IMPORTED INTERFACE: include dir, library, BIFLOW_CPU_CBLAS=1, BIFLOW_CPU_BLAS_NAME,
# BIFLOW_CPU_BLAS_MIN_MNK) when a BLAS is chosen, and BIFLOW_CPU_BLAS_ENGINE (eigen | openblas | blis).
set(BIFLOW_CPU_BLAS "auto" CACHE STRING "GEMM engine of the Cpu backend: auto, eigen, openblas, blis")
set_property(CACHE BIFLOW_CPU_BLAS PROPERTY STRINGS auto eigen openblas blis)
if(NOT BIFLOW_CPU_BLAS MATCHES "^(auto|eigen|openblas|blis)$")
  message(FATAL_ERROR "biflow: BIFLOW_CPU_BLAS must be auto, eigen, openblas or blis, not '${BIFLOW_CPU_BLAS}'")
endif()

function(_biflow_find_cblas name inc_var lib_var)
  set(arch ${CMAKE_LIBRARY_ARCHITECTURE})
  if(name STREQUAL "openblas")
    set(libname openblas)
  else()
    set(libname blis)
  endif()
  # Debian's serial build first (its own folders), then a plain installation (then set the library's own thread
  # count to 1, e.g. OPENBLAS_NUM_THREADS=1, as biflow threads the GEMMs itself).
  find_path(BIFLOW_${name}_INCLUDE cblas.h NO_DEFAULT_PATH
            PATHS /usr/include/${arch}/${name}-serial ${BLAS_ROOT}/include/${name} ${BLAS_ROOT}/include)
  find_library(BIFLOW_${name}_LIBRARY ${libname} NO_DEFAULT_PATH
               PATHS /usr/lib/${arch}/${name}-serial ${BLAS_ROOT}/lib ${BLAS_ROOT}/lib64)
  if(NOT BIFLOW_${name}_INCLUDE OR NOT BIFLOW_${name}_LIBRARY)
    find_path(BIFLOW_${name}_INCLUDE cblas.h PATH_SUFFIXES ${name})
    find_library(BIFLOW_${name}_LIBRARY ${libname})
  endif()
  if(BIFLOW_${name}_INCLUDE AND BIFLOW_${name}_LIBRARY)
    set(${inc_var} ${BIFLOW_${name}_INCLUDE} PARENT_SCOPE)
    set(${lib_var} ${BIFLOW_${name}_LIBRARY} PARENT_SCOPE)
  else()
    set(${inc_var} "" PARENT_SCOPE)
    set(${lib_var} "" PARENT_SCOPE)
  endif()
endfunction()

# Runs the probe against one BLAS; sets <out_var> to its crossover m·n·k (-1: never faster) and <wins_var> to the
# number of shapes on which it beat Eigen.
function(_biflow_probe_cblas name inc lib out_var wins_var)
  get_target_property(eigen_inc Eigen3::Eigen INTERFACE_INCLUDE_DIRECTORIES)
  set(flags -O3)
  if(BIFLOW_NATIVE)
    list(APPEND flags -march=native)
  endif()
  try_run(run_rc compile_ok ${CMAKE_BINARY_DIR}/blas_probe_${name} ${PROJECT_SOURCE_DIR}/benchmarks/gemm_engines.cpp
          CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${inc};${eigen_inc}"
          COMPILE_DEFINITIONS ${flags}
          LINK_LIBRARIES ${lib}
          CXX_STANDARD 20
          COMPILE_OUTPUT_VARIABLE compile_out
          RUN_OUTPUT_VARIABLE run_out)
  if(NOT compile_ok OR NOT run_rc EQUAL 0)
    message(STATUS "biflow: the GEMM probe against ${name} did not build or run; not using it")
    set(${out_var} -1 PARENT_SCOPE)
    set(${wins_var} 0 PARENT_SCOPE)
    return()
  endif()
  string(REGEX MATCH "crossover (-?[0-9]+)" _ "${run_out}")
  set(cross ${CMAKE_MATCH_1})
  set(wins 0)
  string(REPLACE "\n" ";" lines "${run_out}")
  foreach(l ${lines})
    if(NOT l MATCHES "^(shape|crossover)")
      if(l MATCHES " ([0-9.]+)$" AND CMAKE_MATCH_1 GREATER 1.05)  # the ratio column
        math(EXPR wins "${wins} + 1")
      endif()
    endif()
  endforeach()
  message(STATUS "biflow: GEMM probe, ${name} vs Eigen (time ratio per shape):\n${run_out}")
  set(${out_var} ${cross} PARENT_SCOPE)
  set(${wins_var} ${wins} PARENT_SCOPE)
endfunction()

set(BIFLOW_CPU_BLAS_ENGINE eigen)
if(NOT BIFLOW_CPU_BLAS STREQUAL "eigen")
  if(BIFLOW_CPU_BLAS STREQUAL "auto")
    set(candidates openblas blis)
  else()
    set(candidates ${BIFLOW_CPU_BLAS})
  endif()
  if(DEFINED BIFLOW_CPU_BLAS_PROBED AND BIFLOW_CPU_BLAS_PROBED STREQUAL "${BIFLOW_CPU_BLAS}")
    set(best ${BIFLOW_CPU_BLAS_PROBED_ENGINE})
    set(best_cross ${BIFLOW_CPU_BLAS_PROBED_MNK})
  else()
    set(best eigen)
    set(best_cross -1)
    set(best_wins 0)
    foreach(c ${candidates})
      _biflow_find_cblas(${c} inc lib)
      if(NOT inc)
        if(NOT BIFLOW_CPU_BLAS STREQUAL "auto")
          message(FATAL_ERROR "biflow: BIFLOW_CPU_BLAS=${c} but its cblas.h / library was not found (Debian: "
                              "apt-get install lib${c}-serial-dev; elsewhere set BLAS_ROOT)")
        endif()
        continue()
      endif()
      _biflow_probe_cblas(${c} "${inc}" "${lib}" cross wins)
      if(NOT BIFLOW_CPU_BLAS STREQUAL "auto")
        set(best ${c})  # asked for by name: used from its crossover, or (never faster) for the largest products only
        set(best_cross ${cross})
        if(cross LESS 0)
          set(best_cross 1000000000)
        endif()
      elseif(cross GREATER 0 AND wins GREATER best_wins)
        set(best ${c})
        set(best_cross ${cross})
        set(best_wins ${wins})
      endif()
    endforeach()
    set(BIFLOW_CPU_BLAS_PROBED "${BIFLOW_CPU_BLAS}" CACHE INTERNAL "the BIFLOW_CPU_BLAS setting last probed")
    set(BIFLOW_CPU_BLAS_PROBED_ENGINE ${best} CACHE INTERNAL "the engine the probe chose")
    set(BIFLOW_CPU_BLAS_PROBED_MNK ${best_cross} CACHE INTERNAL "the chosen engine's crossover m*n*k")
  endif()
  if(NOT best STREQUAL "eigen")
    _biflow_find_cblas(${best} inc lib)
    if(NOT TARGET biflow::cpu_blas)
      add_library(biflow::cpu_blas INTERFACE IMPORTED ${_biflow_cpu_blas_global})
      target_include_directories(biflow::cpu_blas INTERFACE ${inc})
      target_link_libraries(biflow::cpu_blas INTERFACE ${lib})
      target_compile_definitions(biflow::cpu_blas INTERFACE BIFLOW_CPU_CBLAS=1 BIFLOW_CPU_BLAS_NAME="${best}"
                                                            BIFLOW_CPU_BLAS_MIN_MNK=${best_cross})
    endif()
    set(BIFLOW_CPU_BLAS_ENGINE ${best})
    message(STATUS "biflow: Cpu GEMM engine ${best} for m*n*k >= ${best_cross} (${lib}), Eigen below")
  else()
    message(STATUS "biflow: Cpu GEMM engine Eigen (BIFLOW_CPU_BLAS=${BIFLOW_CPU_BLAS}: no BLAS found or none faster)")
  endif()
else()
  message(STATUS "biflow: Cpu GEMM engine Eigen (BIFLOW_CPU_BLAS=eigen)")
endif()
