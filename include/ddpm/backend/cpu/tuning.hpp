#pragma once
// The run-time tuning of backend::Cpu: one Tuning value holds every knob
// that picks a code path, a cache budget or the point where threads pay. It is
// read through tuning() and changed through set_tuning() (as Eigen's
// setCpuCacheSizes); ScopedTuning changes it for one scope.
//
// The defaults suit cores with a private L2 of 1-2 MiB and an L1 of 32-48 KiB
// (the machines the backend was tuned on; measurements in
// examples/bench/NOTES.md). Every setting computes the same function; the path
// switches and the budgets change the order in which sums are formed, so
// results differ between settings within rounding, and are deterministic for
// one setting and thread count.
//
// Thread safety: the tuning is process-wide, and ops read it while they run,
// from the pool's threads too. Call set_tuning (or make a ScopedTuning) only
// while no backend op runs.
//
// Also here: DDPM_CPU_PACKED_KERNEL, 1 when the build has the packed
// micro-kernel of kernel.hpp (AVX2 + FMA) and with it the packed, wide and
// Winograd convolution paths; 0 elsewhere (the convolution then uses Eigen's
// GEMM on im2col tiles only, and the path switches below have no effect).
#include <cmath>
#include <cstddef>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#define DDPM_CPU_PACKED_KERNEL 1
#else
#define DDPM_CPU_PACKED_KERNEL 0
#endif

namespace ddpm::backend::cpu_detail {

struct Tuning {
  // ---- convolution paths (conv.hpp); tests switch them to check each one ----
  // The packed micro-kernel (kernel.hpp); false: Eigen's GEMM on im2col tiles.
  bool use_packed_kernel = DDPM_CPU_PACKED_KERNEL != 0;
  // Stride 1 on the packed path without im2col (conv.hpp, WideGeom); false:
  // im2col tiles. It saves building the patch matrix, the largest buffer.
  bool use_wide = true;
  // 3x3 stride 1 by Winograd F(2x2, 3x3) (winograd.hpp) where the limits below
  // allow: 16 multiplies per output pair and channel instead of 36.
  bool use_winograd = true;

  // ---- when Winograd pays (conv.hpp, winograd_applies) ----
  // Input and output channels at least this: with fewer, transforming the
  // filters (16/9 the size of W, redone by every thread) is not paid back.
  index_t winograd_min_channels = 32;
  // The same for images of at most 8x8 (output pixels <= 64).
  index_t winograd_min_channels_small = 32;
  // 2x2 output tiles in the batch at least this: under it the transforms of
  // the short tile rows cost more than the GEMMs save.
  index_t winograd_min_tiles = 48;
  // The same for images of at most 8x8, whose tile rows are 4 tiles or fewer.
  index_t winograd_min_tiles_small = 64;

  // ---- cache budgets, in bytes ----
  // im2col tile (rows of the patch matrix x pixels): it and the GEMM's
  // working set stay in L2.
  std::size_t im2col_tile_bytes = 96 * 1024;
  // Wide-path forward output tile (Co x pixels): stays in L2 while all of W
  // streams past it.
  std::size_t wide_fwd_tile_bytes = 64 * 1024;
  // Wide-path weight gradient: the packed dY tile (Co x depth) stays in L2
  // while the patch panels stream past it.
  std::size_t wide_dw_tile_bytes = 128 * 1024;
  // Winograd forward, per block of tile rows: the transformed tiles V and the
  // products M (16 planes each). Past 512 KiB the forward gains nothing.
  std::size_t winograd_fwd_bytes = 512 * 1024;
  // Winograd weight gradient, per block: the transformed input and output
  // gradient; their packed copies take as much again, so 512 KiB fills half a
  // 2 MiB L2 with both.
  std::size_t winograd_dw_bytes = 512 * 1024;

  // ---- threads (common.hpp, threads_for) ----
  // An op takes one thread per this much work, and runs inline below twice
  // this: waking the pool costs microseconds, which small ops do not repay.
  // Compute-bound ops (GEMM, convolution, attention, SiLU), in flops or
  // flop-equivalents per element.
  double min_flops_per_thread = 2e5;
  // Memory-bound ops (copies, adds, channel sums, upsampling), in element
  // reads and writes.
  double min_touches_per_thread = 1e5;
  // GroupNorm, in its own unit: elements weighted by its per-element costs
  // (pointwise.hpp), which are relative weights (an exp against a
  // multiply-add), not flops; this is the threshold they were set with.
  double min_norm_work_per_thread = 3e4;
};

// The one instance: constant-initialised, so reading it costs no guard.
inline Tuning& tuning_storage() {
  static Tuning t;
  return t;
}

// The current tuning.
inline const Tuning& tuning() { return tuning_storage(); }

// Replaces the tuning, process-wide. Only while no backend op runs (see above).
// Throws ddpm::Error, changing nothing, when a budget is zero or a thread
// threshold is not a positive finite number.
inline void set_tuning(const Tuning& t) {
  const auto budget = [](std::size_t v, const char* name) {
    require(v > 0, "backend::Cpu tuning: ", name, " must be at least 1 byte");
  };
  budget(t.im2col_tile_bytes, "im2col_tile_bytes");
  budget(t.wide_fwd_tile_bytes, "wide_fwd_tile_bytes");
  budget(t.wide_dw_tile_bytes, "wide_dw_tile_bytes");
  budget(t.winograd_fwd_bytes, "winograd_fwd_bytes");
  budget(t.winograd_dw_bytes, "winograd_dw_bytes");
  const auto threshold = [](double v, const char* name) {
    require(std::isfinite(v) && v > 0, "backend::Cpu tuning: ", name, " must be a positive finite number, got ", v);
  };
  threshold(t.min_flops_per_thread, "min_flops_per_thread");
  threshold(t.min_touches_per_thread, "min_touches_per_thread");
  threshold(t.min_norm_work_per_thread, "min_norm_work_per_thread");
  tuning_storage() = t;
}

// Sets a tuning for the lifetime of the object and restores the one before
// on destruction, also when the scope is left by an exception (a failed
// REQUIRE in a test). Same thread-safety rule as set_tuning.
class ScopedTuning {
 public:
  ScopedTuning() : saved_(tuning()) {}
  explicit ScopedTuning(const Tuning& t) : saved_(tuning()) { set_tuning(t); }
  ScopedTuning(const ScopedTuning&) = delete;
  ScopedTuning& operator=(const ScopedTuning&) = delete;
  ~ScopedTuning() { tuning_storage() = saved_; }

  // The tuning in force when this guard was made.
  const Tuning& saved() const { return saved_; }

 private:
  Tuning saved_;
};

}  // namespace ddpm::backend::cpu_detail
