#pragma once
// backend::Eigen: the fast CPU backend. Same contract and results (within
// rounding) as backend::Reference (backend/backend.hpp), built on Eigen's
// GEMM and vectorised array expressions:
//
//   gemm, linear      Eigen GEMM on row-major maps, split over threads by rows
//                     or columns of the result
//   conv2d            GEMM formulation (eigen/conv.hpp): with AVX2+FMA a
//                     register-blocked kernel (eigen/kernel.hpp) fed without
//                     im2col for stride 1; otherwise im2col tiles + Eigen GEMM.
//                     backward = weight GEMM accumulated per thread + col2im
//   group_norm        two-pass mean/variance per (n, group) on Eigen arrays;
//                     fused with the SiLU that follows it where nn/ asks
//   silu, upsample,   vectorised element loops
//   add, transpose
//   attention         per (batch, head) GEMMs on strided head slices
//   copies, embeddings element or row loops split over threads
//   training ops      Adam, EMA, q_sample, the loss: split over threads with
//                     Reference's element formulas (eigen/training.hpp)
//
// Threads: a fork-join pool (core/thread_pool.hpp) of num_threads()
// participants, set at run time with set_num_threads (default: the hardware
// concurrency). Work is split statically, and per-thread partial parameter
// gradients are summed in thread order, so results are deterministic for a
// given thread count (and equal within rounding across counts).
//
// Scratch (im2col tiles, partial gradients, attention rows) lives in
// per-thread buffers that only grow: steady-state calls do not allocate
// (apart from Eigen's own GEMM packing buffers above its stack limit, used by
// gemm/linear/attention and the non-AVX2 convolution path).
#include <string_view>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/eigen/attention.hpp"
#include "ddpm/backend/eigen/common.hpp"
#include "ddpm/backend/eigen/conv.hpp"
#include "ddpm/backend/eigen/pointwise.hpp"
#include "ddpm/backend/eigen/training.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::backend {

struct Eigen : Forwarding<Eigen, Host> {
  static constexpr std::string_view name() { return "eigen"; }
  static void set_num_threads(int n) { eigen_detail::set_num_threads(n); }
  static int num_threads() { return eigen_detail::num_threads(); }

  // Every op of the table: eigen_detail::run(op, ...) in eigen/*.hpp.
  template <class Op, class... A>
  static decltype(auto) invoke(Op op, A... a) {
    return eigen_detail::run(op, a...);
  }
};

static_assert(Backend<Eigen>);

}  // namespace ddpm::backend
