# Runs EXE twice: without BIFLOW_REQUIRE_GPU it must exit 0 (GPU present: then this check is moot and says so) or
# 77 (no GPU: skipped); with BIFLOW_REQUIRE_GPU=1 and no GPU it must fail with the message that says why.
execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=BIFLOW_REQUIRE_GPU ${EXE} --test-case=none
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(STATUS "a GPU is present: nothing to check")
  return()
endif()
if(NOT rc EQUAL 77)
  message(FATAL_ERROR "without BIFLOW_REQUIRE_GPU: expected exit 0 or 77, got ${rc}\n${out}${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env BIFLOW_REQUIRE_GPU=1 ${EXE} --test-case=none
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR rc EQUAL 77 OR NOT err MATCHES "BIFLOW_REQUIRE_GPU=1 but this machine has no CUDA device")
  message(FATAL_ERROR "with BIFLOW_REQUIRE_GPU=1 and no GPU: expected a failure naming the variable, got exit ${rc}\n${out}${err}")
endif()
message(STATUS "no GPU: skipped without the variable, failed with it (exit ${rc})")
