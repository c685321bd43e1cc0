# Installs biflow from BUILD into a fresh prefix, then configures and builds tests/consumer_cuda against it
# (compile and link only: CI has no GPU). Checks that the installed package exports biflow::cuda and that the
# digits data were installed.
set(prefix ${WORK}/prefix)
file(REMOVE_RECURSE ${WORK})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix} RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed")
endif()
if(NOT EXISTS ${prefix}/share/biflow/data/digits.csv)
  message(FATAL_ERROR "the installed package has no share/biflow/data/digits.csv")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC} -B ${WORK}/build -DCMAKE_PREFIX_PATH=${prefix}
                -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the CUDA consumer against the installed package failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK}/build RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the CUDA consumer against biflow::cuda failed")
endif()
message(STATUS "CUDA consumer built against the installed biflow::cuda")
