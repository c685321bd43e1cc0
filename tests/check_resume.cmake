# An example run of N steps vs the same run stopped half-way (its checkpoint) and resumed with --resume: both
# reports must give the same KEY to all printed digits.
#   cmake -DEXE=... -DWORK=dir -DARGS="--steps;120;..." -DHALF=60 -DKEY=test_bpd -P check_resume.cmake
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${EXE} ${ARGS} --report ${WORK}/full.json RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "uninterrupted run failed")
endif()
# "Interrupted": the same schedule, stopped after HALF steps with a checkpoint there.
execute_process(COMMAND ${EXE} ${ARGS} --stop-after ${HALF} --checkpoint ${WORK}/half.ckpt --report ${WORK}/half.json
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "first half failed")
endif()
execute_process(COMMAND ${EXE} ${ARGS} --resume ${WORK}/half.ckpt --report ${WORK}/resumed.json RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "resumed run failed")
endif()
file(READ ${WORK}/full.json full)
file(READ ${WORK}/resumed.json resumed)
string(JSON a GET "${full}" ${KEY})
string(JSON b GET "${resumed}" ${KEY})
if(NOT a STREQUAL b)
  message(FATAL_ERROR "resumed run ends at ${KEY} ${b}, the uninterrupted one at ${a}")
endif()
message(STATUS "resume reproduces the uninterrupted run: ${KEY} ${a}")
