#pragma once
// A thin RAII layer over MPI for ddpm's data-parallel training
// (distributed/data_parallel.hpp). Optional: only this folder includes
// <mpi.h>; the rest of the library never does. Link MPI::MPI_CXX (CMake:
// find_package(MPI COMPONENTS CXX)), or build with mpicxx.
//
//   int main(int argc, char** argv) {
//     ddpm::distributed::Environment env(argc, argv);    // MPI_Init_thread .. MPI_Finalize
//     auto comm = ddpm::distributed::Communicator::world();
//     ...
//   }
//
// Every MPI call is checked: a failure throws ddpm::Error with MPI's own
// message and the call that failed. (Communicators made here use
// MPI_ERRORS_RETURN, so errors come back as codes instead of aborting.)
//
// Counts: MPI takes `int` counts; the collectives here split larger buffers
// into pieces, so a 3 GB gradient buffer or checkpoint is fine.
//
// Threads: MPI is initialised with MPI_THREAD_FUNNELED. Only the thread that
// called the constructor of Environment may call MPI (the backends' worker
// threads never do).
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"

namespace ddpm::distributed {

// Throws ddpm::Error naming `what` and MPI's message when `rc` is not MPI_SUCCESS.
inline void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) [[likely]]
    return;
  char msg[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  fail("MPI: ", what, " failed: ",
       len > 0 ? std::string(msg, static_cast<std::size_t>(len)) : "error code " + std::to_string(rc));
}

// The MPI datatype of a C++ type (the types the library reduces and sends).
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int32_t>) return MPI_INT32_T;
  else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, char>) return MPI_CHAR;
  else if constexpr (std::is_same_v<T, unsigned char>) return MPI_UNSIGNED_CHAR;
  else static_assert(sizeof(T) == 0, "ddpm::distributed: no MPI datatype for this type");
}

// MPI_Init_thread in the constructor, MPI_Finalize in the destructor (only
// if this object initialised MPI: an Environment inside a program that has
// already initialised MPI is a no-op).
class Environment {
 public:
  Environment(int& argc, char**& argv) { init(&argc, &argv); }
  Environment() { init(nullptr, nullptr); }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment() {
    if (!owner_) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }

  static bool initialized() {
    int flag = 0;
    MPI_Initialized(&flag);
    return flag != 0;
  }
  static bool finalized() {
    int flag = 0;
    MPI_Finalized(&flag);
    return flag != 0;
  }
  // Ends every rank of the job (for an error on one rank that the others
  // cannot learn about: they would otherwise wait forever in a collective).
  [[noreturn]] static void abort(int code = 1) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();
  }
  int thread_level() const { return provided_; }

 private:
  void init(int* argc, char*** argv) {
    if (initialized()) {
      MPI_Query_thread(&provided_);
      return;
    }
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided_), "MPI_Init_thread");
    owner_ = true;
    require(provided_ >= MPI_THREAD_FUNNELED, "MPI: the library provides thread level ", provided_,
            ", ddpm needs MPI_THREAD_FUNNELED (", MPI_THREAD_FUNNELED, ")");
  }
  bool owner_ = false;
  int provided_ = MPI_THREAD_SINGLE;
};

// A communicator: a private duplicate of an MPI communicator (so ddpm's
// messages never match a user's), freed on destruction. Move-only.
class Communicator {
 public:
  // Duplicates `comm` (collective over `comm`).
  explicit Communicator(MPI_Comm comm) {
    require(Environment::initialized() && !Environment::finalized(),
            "ddpm::distributed::Communicator: MPI is not initialised (create a distributed::Environment first)");
    check_mpi(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  static Communicator world() { return Communicator(MPI_COMM_WORLD); }
  static Communicator self() { return Communicator(MPI_COMM_SELF); }

  Communicator(Communicator&& o) noexcept
      : comm_(std::exchange(o.comm_, MPI_COMM_NULL)), rank_(o.rank_), size_(o.size_) {}
  Communicator& operator=(Communicator&& o) noexcept {
    if (this != &o) {
      release();
      comm_ = std::exchange(o.comm_, MPI_COMM_NULL);
      rank_ = o.rank_;
      size_ = o.size_;
    }
    return *this;
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() { release(); }

  // Another private duplicate of this communicator (collective).
  Communicator duplicate() const { return Communicator(comm_); }

  MPI_Comm native() const { return comm_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  // The number of ranks of this communicator on this machine (shared
  // memory), e.g. to split the cores: threads = cores / local_size().
  int local_size() const {
    MPI_Comm local = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
              "MPI_Comm_split_type");
    int n = 1;
    const int rc = MPI_Comm_size(local, &n);
    MPI_Comm_free(&local);
    check_mpi(rc, "MPI_Comm_size");
    return n;
  }

  void barrier() const { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

  // Broadcasts `data` from `root` to every rank (in place).
  template <class T>
  void broadcast(std::span<T> data, int root = 0) const {
    for_pieces(data.size(), [&](std::size_t off, int n) {
      check_mpi(MPI_Bcast(data.data() + off, n, mpi_type<std::remove_const_t<T>>(), root, comm_), "MPI_Bcast");
    });
  }
  template <class T>
  T broadcast_value(T v, int root = 0) const {
    broadcast(std::span<T>(&v, 1), root);
    return v;
  }
  // Broadcasts a string of any length from `root`.
  std::string broadcast_string(std::string s, int root = 0) const {
    auto n = broadcast_value<std::int64_t>(static_cast<std::int64_t>(s.size()), root);
    s.resize(static_cast<std::size_t>(n));
    broadcast(std::span<char>(s.data(), s.size()), root);
    return s;
  }

  // Element-wise reduction over all ranks, in place; every rank gets the result.
  template <class T>
  void allreduce(std::span<T> data, MPI_Op op) const {
    for_pieces(data.size(), [&](std::size_t off, int n) {
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, data.data() + off, n, mpi_type<T>(), op, comm_), "MPI_Allreduce");
    });
  }
  template <class T>
  void allreduce_sum(std::span<T> data) const { allreduce(data, MPI_SUM); }
  template <class T>
  T allreduce_value(T v, MPI_Op op) const {
    allreduce(std::span<T>(&v, 1), op);
    return v;
  }
  template <class T>
  T sum(T v) const { return allreduce_value(v, MPI_SUM); }
  template <class T>
  T min(T v) const { return allreduce_value(v, MPI_MIN); }
  template <class T>
  T max(T v) const { return allreduce_value(v, MPI_MAX); }

  // Non-blocking in-place allreduce of at most INT_MAX elements; wait on the request.
  template <class T>
  MPI_Request iallreduce(std::span<T> data, MPI_Op op) const {
    require(data.size() <= kMaxCount, "MPI_Iallreduce: ", data.size(), " elements is more than MPI's int count");
    MPI_Request r = MPI_REQUEST_NULL;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), mpi_type<T>(), op, comm_, &r),
              "MPI_Iallreduce");
    return r;
  }

  // Gathers one value from every rank (rank order) on every rank.
  template <class T>
  std::vector<T> allgather_value(T v) const {
    std::vector<T> out(static_cast<std::size_t>(size_));
    check_mpi(MPI_Allgather(&v, 1, mpi_type<T>(), out.data(), 1, mpi_type<T>(), comm_), "MPI_Allgather");
    return out;
  }

  // The largest element count passed to one MPI call (MPI counts are int).
  static constexpr std::size_t kMaxCount = std::size_t{1} << 30;

 private:
  template <class F>
  static void for_pieces(std::size_t total, F&& f) {
    for (std::size_t off = 0; off < total; off += kMaxCount) f(off, static_cast<int>(std::min(kMaxCount, total - off)));
  }
  void release() noexcept {
    if (comm_ != MPI_COMM_NULL && !Environment::finalized()) MPI_Comm_free(&comm_);
    comm_ = MPI_COMM_NULL;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace ddpm::distributed
