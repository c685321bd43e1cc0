# Runs a reference command and a distributed one (each writes a JSON report), then requires every key in KEYS to
# agree within TOL (absolute). RUN_A / RUN_B: the two command lines (;-lists), REPORT_A / REPORT_B: their reports.
# Optional PRE: a command run first (e.g. the first half of a run that RUN_B resumes).
cmake_minimum_required(VERSION 3.20)
include(${CMAKE_CURRENT_LIST_DIR}/compare_lib.cmake)
file(REMOVE ${REPORT_A} ${REPORT_B})  # a stale report cannot pass
foreach(cmd PRE RUN_A RUN_B)
  if(DEFINED ${cmd} AND NOT "${${cmd}}" STREQUAL "")
    execute_process(COMMAND ${${cmd}} RESULT_VARIABLE rc TIMEOUT 600)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${cmd} (${${cmd}}) exited with ${rc}")
    endif()
  endif()
endforeach()
compare_reports(${REPORT_A} ${REPORT_B} "${KEYS}" ${TOL})
