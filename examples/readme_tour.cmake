# The README's tour is examples/quickstart.cpp, unchanged: the first ```cpp
# block after "## A short tour" must equal the file, so the code the README
# shows is the code CI builds and runs (examples/quickstart).
#   cmake -DREADME=README.md -DSOURCE=examples/quickstart.cpp -P readme_tour.cmake
file(READ "${README}" readme)
file(READ "${SOURCE}" source)
string(FIND "${readme}" "## A short tour" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${README}: no '## A short tour' section")
endif()
string(SUBSTRING "${readme}" ${at} -1 tour)
string(FIND "${tour}" "```cpp\n" open)
if(open EQUAL -1)
  message(FATAL_ERROR "${README}: no ```cpp block in '## A short tour'")
endif()
math(EXPR begin "${open} + 7")
string(SUBSTRING "${tour}" ${begin} -1 rest)
string(FIND "${rest}" "```" close)
string(SUBSTRING "${rest}" 0 ${close} code)
if(NOT "${code}" STREQUAL "${source}")
  message(FATAL_ERROR "${README}: the code in '## A short tour' differs from ${SOURCE}; copy the file into it")
endif()
message(STATUS "README tour = ${SOURCE}")
