// The Catch2 main of the MPI tests: every rank runs every test case (the
// cases call collectives, so all ranks must take the same path), and the
// program fails on every rank when an assertion failed on any rank.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <string>

#include "ddpm/distributed/mpi.hpp"

int main(int argc, char** argv) {
  ddpm::distributed::Environment env(argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int failed = 0;
  {
    Catch::Session session;
    session.configData().name = "mpi tests, rank " + std::to_string(rank);
    if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
    failed = session.run() != 0 ? 1 : 0;
  }
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return failed;
}
