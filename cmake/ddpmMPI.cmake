# Optional data-parallel training over MPI (include/ddpm/distributed/).
#
# Included by the top-level CMakeLists.txt once the ddpm and ddpm_dev_flags
# targets exist:   include(cmake/ddpmMPI.cmake)
#
# Defines
#   DDPM_WITH_MPI       option, ON by default when an MPI C++ library is found
#   ddpm::mpi           in-tree target: ddpm::ddpm + MPI::MPI_CXX (for tests and examples)
#   ddpm_add_mpi_test(<name> <target> [NPROCS n])
#                       registers `mpiexec -n <n> <target>` with ctest (label mpi)
# and, when DDPM_WITH_MPI is on,
#   the MPI test program (tests/mpi, ctest -L mpi, run under mpiexec -n 2),
#   the compile-alone check of the distributed/ headers (DDPM_CHECK_HEADERS),
#   the ddpm_dp_bench example (DDPM_BUILD_EXAMPLES).
#
# The core library never includes MPI: users of distributed/ link MPI
# themselves (find_package(MPI COMPONENTS CXX) + MPI::MPI_CXX, or mpicxx).

get_filename_component(_ddpm_root ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
find_package(MPI COMPONENTS CXX QUIET)
option(DDPM_WITH_MPI "Build the MPI data-parallel tests and examples (include/ddpm/distributed)" ${MPI_CXX_FOUND})
set(DDPM_MPI_TEST_PROCS 2 CACHE STRING "Number of MPI ranks the MPI tests run on")

if(NOT DDPM_WITH_MPI)
  return()
endif()
if(NOT MPI_CXX_FOUND)
  message(FATAL_ERROR "DDPM_WITH_MPI is ON but no MPI C++ library was found "
                      "(Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin), or set -DDDPM_WITH_MPI=OFF")
endif()
message(STATUS "ddpm: MPI data parallelism on (MPI ${MPI_CXX_VERSION}; mpiexec: ${MPIEXEC_EXECUTABLE})")

add_library(ddpm_mpi INTERFACE)
add_library(ddpm::mpi ALIAS ddpm_mpi)
target_link_libraries(ddpm_mpi INTERFACE ddpm MPI::MPI_CXX)

# ddpm_add_mpi_test(<name> <target> [NPROCS n] [ARGS ...])
function(ddpm_add_mpi_test name target)
  cmake_parse_arguments(arg "" "NPROCS" "ARGS" ${ARGN})
  if(NOT arg_NPROCS)
    set(arg_NPROCS ${DDPM_MPI_TEST_PROCS})
  endif()
  add_test(NAME ${name}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${arg_NPROCS} ${MPIEXEC_PREFLAGS}
            $<TARGET_FILE:${target}> ${MPIEXEC_POSTFLAGS} ${arg_ARGS})
  # Open MPI refuses to run as root without both variables (CI containers run as
  # root) and more ranks than cores without oversubscription (2 ranks on a
  # small runner). Environment variables, unlike --allow-run-as-root and
  # --oversubscribe, are ignored by other MPI implementations.
  set_tests_properties(${name} PROPERTIES
    LABELS mpi
    TIMEOUT 300
    PROCESSORS ${arg_NPROCS}
    # Under the asan preset: memory errors and UB are checked, leaks are not.
    # Open MPI's runtime keeps allocations to the end by design, in plugins it
    # unloads and libraries without frame pointers, so they can be neither
    # fixed nor told apart by a suppression list.
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;ASAN_OPTIONS=detect_leaks=0:strict_string_checks=1:check_initialization_order=1")
endfunction()

if(DDPM_BUILD_TESTS)
  enable_testing()
  find_package(Catch2 2.13 REQUIRED)
  set(_ddpm_mpi_tmp ${CMAKE_BINARY_DIR}/tests/tmp)
  file(MAKE_DIRECTORY ${_ddpm_mpi_tmp}/mpi)
  # tests/mpi/dp_*.cpp: one program with its own main (MPI_Init, every rank
  # runs every case, non-zero exit on all ranks if any rank failed). The files
  # are not named test_*.cpp, so tests/CMakeLists.txt's per-area glob skips them.
  file(GLOB _ddpm_mpi_sources CONFIGURE_DEPENDS ${_ddpm_root}/tests/mpi/dp_*.cpp)
  add_executable(mpi_data_parallel ${_ddpm_mpi_sources})
  target_link_libraries(mpi_data_parallel PRIVATE ddpm::mpi Catch2::Catch2 ddpm_dev_flags)
  target_compile_definitions(mpi_data_parallel PRIVATE DDPM_TEST_TMP_DIR="${_ddpm_mpi_tmp}")
  target_include_directories(mpi_data_parallel PRIVATE ${_ddpm_root}/tests)
  ddpm_add_mpi_test(mpi/data_parallel mpi_data_parallel)

  if(DDPM_CHECK_HEADERS)
    # Each distributed/ header compiles on its own (with MPI's include path);
    # cmake/CheckHeaders.cmake leaves this folder out.
    include(${_ddpm_root}/cmake/CheckHeaders.cmake)
    ddpm_check_headers(ddpm_mpi_header_check ${_ddpm_root}/include ddpm::mpi SUBDIR distributed)
  endif()
endif()

if(DDPM_BUILD_EXAMPLES AND EXISTS ${_ddpm_root}/examples/mpi/dp_bench.cpp)
  add_executable(ddpm_dp_bench ${_ddpm_root}/examples/mpi/dp_bench.cpp)
  target_link_libraries(ddpm_dp_bench PRIVATE ddpm::mpi ddpm_dev_flags)
endif()
