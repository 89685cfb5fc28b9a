# Runs a command that must fail with a given message (the examples' tests of
# bad command-line values, examples/CMakeLists.txt):
#
#   cmake [-DEXIT_CODE=<n>] -DEXPECT=<text>[;<text>...] -P expect_failure.cmake -- <command> [<arg>...]
#
# Passes when <command> exits with EXIT_CODE (default: any non-zero code; a
# crash or a timeout never passes) and its stdout and stderr together contain
# every EXPECT text. The texts are literal substrings, not regular
# expressions, so "[0, 1)" needs no escaping (but CMake does not split a
# list at a ";" after an unmatched "[": pass such a text alone). An argument
# of the command must not contain ";" either.
set(cmd "")
set(in_cmd FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(in_cmd)
    list(APPEND cmd "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(in_cmd TRUE)
  endif()
endforeach()
if(cmd STREQUAL "")
  message(FATAL_ERROR "expect_failure: no command after --")
endif()
if(NOT DEFINED EXPECT OR EXPECT STREQUAL "")
  message(FATAL_ERROR "expect_failure: -DEXPECT=<text> is required")
endif()

execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
set(output "${out}${err}")
string(REPLACE ";" " " shown "${cmd}")
message("$ ${shown}\n${output}(exit: ${rc})")

if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "expect_failure: the command did not exit normally: ${rc}")
elseif(DEFINED EXIT_CODE AND NOT rc EQUAL EXIT_CODE)
  message(FATAL_ERROR "expect_failure: exit code ${rc}, expected ${EXIT_CODE}")
elseif(rc EQUAL 0)
  message(FATAL_ERROR "expect_failure: the command succeeded, expected it to fail")
endif()
foreach(text IN LISTS EXPECT)
  string(FIND "${output}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expect_failure: the output does not contain '${text}'")
  endif()
endforeach()
