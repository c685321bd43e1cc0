# digits_tarflow: a run of 120 steps vs the same run stopped at step 60 (its checkpoint) and resumed with --resume:
# both reports must give the same test bits/dim to all printed digits.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${EXE} --blocks 2 --batch 32 --steps 120 --report ${WORK}/full.json RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "uninterrupted run failed")
endif()
# "Interrupted": the same schedule (--steps 120), stopped after 60 steps with a checkpoint there.
execute_process(COMMAND ${EXE} --blocks 2 --batch 32 --steps 120 --stop-after 60 --checkpoint ${WORK}/half.ckpt
                        --report ${WORK}/half.json
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "first half failed")
endif()
execute_process(COMMAND ${EXE} --blocks 2 --batch 32 --steps 120 --resume ${WORK}/half.ckpt --report ${WORK}/resumed.json
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "resumed run failed")
endif()
file(READ ${WORK}/full.json full)
file(READ ${WORK}/resumed.json resumed)
string(JSON a GET "${full}" test_bpd)
string(JSON b GET "${resumed}" test_bpd)
if(NOT a STREQUAL b)
  message(FATAL_ERROR "resumed run ends at test_bpd ${b}, the uninterrupted one at ${a}")
endif()
message(STATUS "resume reproduces the uninterrupted run: test_bpd ${a}")
