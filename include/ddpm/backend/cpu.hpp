#pragma once
// backend::Cpu: the fast CPU backend. Same contract and results (within
// rounding) as backend::Reference (backend/backend.hpp):
//
//   gemm, linear      a packed register-tile micro-kernel (cpu/kernel.hpp,
//                     AVX2 or AVX-512) where the CPU has one, else Eigen's GEMM
//   conv2d            GEMMs without im2col buffers (cpu/conv.hpp); 3x3 stride-1
//                     layers with enough channels and tiles use Winograd's
//                     F(2x2, 3x3) (cpu/winograd.hpp) forward, for the input
//                     gradient and for the weight gradient
//   group_norm        two-pass statistics per (n, group), fused with the SiLU
//                     that follows it where nn/ asks (cpu/pointwise.hpp)
//   silu, upsample,   vectorised element loops
//   add, transpose
//   attention         per (batch, head) GEMMs on strided head slices
//   copies, embeddings element or row loops split over threads
//   training ops      Adam, EMA, q_sample, the loss: split over threads with
//                     Reference's element formulas (cpu/training.hpp)
//
// Which path runs is decided by one set of tuning knobs (cpu/tuning.hpp:
// Cpu::Tuning, set_tuning, ScopedTuning).
//
// Threads: a fork-join pool (core/thread_pool.hpp) of num_threads()
// participants, set at run time with set_num_threads (default: the hardware
// concurrency). Work is split statically, and per-thread partial parameter
// gradients are summed in thread order, so results are deterministic for a
// given thread count (and equal within rounding across counts). Inference
// on the packed-kernel path (AVX2 + FMA builds) gives the same bits for
// every thread count: GEMMs and attention rows are computed in fixed chunks
// (cpu/common.hpp, cpu/attention.hpp), and the convolutions' per-pixel sums
// do not depend on the split. Eigen's im2col path (builds without AVX2)
// agrees only to rounding across counts.
//
// Scratch (packed panels, partial gradients, attention rows) lives in
// per-thread buffers that only grow: steady-state calls do not allocate.
#include <memory>
#include <string_view>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/cpu/attention.hpp"
#include "ddpm/backend/cpu/common.hpp"
#include "ddpm/backend/cpu/conv.hpp"
#include "ddpm/backend/cpu/pointwise.hpp"
#include "ddpm/backend/cpu/training.hpp"
#include "ddpm/backend/cpu/tuning.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::backend {

struct Cpu : Forwarding<Cpu, Host> {
  static constexpr std::string_view name() { return "cpu"; }
  static void set_num_threads(int n) { cpu_detail::set_num_threads(n); }
  static int num_threads() { return cpu_detail::num_threads(); }
  // The pool the ops run on, for host work beside them (a sampler's noise:
  // NoiseSource(rng, *Cpu::thread_pool())). Holding it keeps it alive.
  static std::shared_ptr<ThreadPool> thread_pool() { return cpu_detail::pool(); }

  // The tuning knobs (cpu/tuning.hpp), process-wide.
  using Tuning = cpu_detail::Tuning;
  using ScopedTuning = cpu_detail::ScopedTuning;
  static const Tuning& tuning() { return cpu_detail::tuning(); }
  static void set_tuning(const Tuning& t) { cpu_detail::set_tuning(t); }

  // Every op of the table: cpu_detail::run(op, ...) in cpu/*.hpp.
  template <class Op, class... A>
  static decltype(auto) invoke(Op op, A... a) {
    return cpu_detail::run(op, a...);
  }
};

static_assert(Backend<Cpu>);

}  // namespace ddpm::backend
