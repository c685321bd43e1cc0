# Compiles SRC and passes only if compilation fails with the message on its "// EXPECT:" line.
file(STRINGS ${SRC} lines REGEX "^// EXPECT: ")
list(GET lines 0 line)
string(REPLACE "// EXPECT: " "" expected "${line}")
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INC} -I${EIGEN} ${SRC}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SRC} compiled, but it must be rejected with: ${expected}")
endif()
string(FIND "${err}" "${expected}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "${SRC} failed to compile, but without the expected message '${expected}':\n${err}")
endif()
message(STATUS "rejected as expected: ${expected}")
