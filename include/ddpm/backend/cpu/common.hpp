#pragma once
// Shared machinery of backend::Cpu: the thread setting and pool, per-thread
// scratch buffers, row-major Eigen maps and the (threaded) GEMM.
//
// Everything here lives in ddpm::backend::cpu_detail and names Eigen's
// namespace as ::Eigen (ddpm::backend::Cpu is the backend struct).
// GCC 12 reports -Wmaybe-uninitialized false positives inside Eigen's AVX-512
// packet transposes (in the intrinsics headers it includes) when they are
// inlined into user code; the state at those header lines is what counts.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/cpu/tuning.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/core/thread_pool.hpp"

namespace ddpm::backend::cpu_detail {

// ---- threads ------------------------------------------------------------------
struct Context {
  std::mutex mutex;
  int threads = default_threads();
  std::shared_ptr<ThreadPool> pool;

  static int default_threads() {
    const unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
  }
};

inline Context& context() {
  static Context ctx;
  return ctx;
}

inline void set_num_threads(int n) {
  auto& c = context();
  std::lock_guard lock(c.mutex);
  c.threads = n < 1 ? 1 : n;
}

inline int num_threads() {
  auto& c = context();
  std::lock_guard lock(c.mutex);
  return c.threads;
}

// The pool for the current thread count (created on first use after a change).
// Holding the shared_ptr keeps it alive while an op runs, even if another
// thread changes the count meanwhile.
inline std::shared_ptr<ThreadPool> pool() {
  auto& c = context();
  std::lock_guard lock(c.mutex);
  if (!c.pool || c.pool->size() != c.threads) {
    ::Eigen::initParallel();
    c.pool = std::make_shared<ThreadPool>(c.threads);
  }
  return c.pool;
}

// Runs f(tid, nthreads) on `want` participants (clamped to the thread
// setting; 1 runs inline without touching the pool).
template <class F>
void parallel(int want, F&& f) {
  if (want <= 1) {
    f(0, 1);
    return;
  }
  auto p = pool();
  if (p->size() <= 1 || ThreadPool::in_task()) {
    // Keep the split a function of the thread setting only: run the parts in order.
    const int n = std::min(want, std::max(p->size(), 1));
    for (int t = 0; t < n; ++t) f(t, n);
    return;
  }
  const int n = std::min(want, p->size());
  p->run([&](int tid) {
    if (tid < n) f(tid, n);
  });
}

// How many threads an op of `work` deserves: one per `per_thread_min` (a
// Tuning threshold in the same unit as work: flops, element touches, or
// GroupNorm's weighted elements), none extra below twice that.
inline int threads_for(double work, double per_thread_min) {
  const int t = num_threads();
  if (t <= 1 || work < 2 * per_thread_min) return 1;
  return std::max(1, std::min(t, static_cast<int>(work / per_thread_min)));
}

// ---- scratch --------------------------------------------------------------------
// Per-OS-thread growable buffers, one per slot, 64-byte aligned. They only grow,
// so steady-state calls with the same shapes never allocate.
enum Slot : int {
  kCol, kPartial, kAttn, kStats, kPackA, kPackB, kPackA2, kWideDy, kWideDx, kPartial2, kGroup, kWinoU, kWinoV, kWinoM, kWinoD, kWinoW, kSlots
};

template <class T>
T* scratch(Slot slot, std::size_t n) {
  static thread_local std::array<std::vector<T, AlignedAllocator<T>>, kSlots> bufs;
  auto& b = bufs[static_cast<std::size_t>(slot)];
  if (b.size() < n) {
    b.clear();
    b.shrink_to_fit();
    b.resize(n + n / 4);
  }
  return b.data();
}

// ---- maps -----------------------------------------------------------------------
template <class T>
using RowMat = ::Eigen::Matrix<T, ::Eigen::Dynamic, ::Eigen::Dynamic, ::Eigen::RowMajor>;
template <class T>
using MapR = ::Eigen::Map<RowMat<T>, ::Eigen::Unaligned, ::Eigen::OuterStride<>>;
template <class T>
using CMapR = ::Eigen::Map<const RowMat<T>, ::Eigen::Unaligned, ::Eigen::OuterStride<>>;
template <class T>
using ArrMap = ::Eigen::Map<::Eigen::Array<T, ::Eigen::Dynamic, 1>>;
template <class T>
using CArrMap = ::Eigen::Map<const ::Eigen::Array<T, ::Eigen::Dynamic, 1>>;

template <class T>
MapR<T> mat(T* p, index_t rows, index_t cols, index_t ld) {
  return MapR<T>(p, rows, cols, ::Eigen::OuterStride<>(ld));
}
template <class T>
CMapR<T> cmat(const T* p, index_t rows, index_t cols, index_t ld) {
  return CMapR<T>(p, rows, cols, ::Eigen::OuterStride<>(ld));
}

// ---- GEMM -----------------------------------------------------------------------
// C[m,n] = alpha * op(A) op(B) + beta * C on one thread, row-major with leading
// dims; beta == 0 overwrites C without reading it.
template <class T>
void gemm_serial(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* A, index_t lda, const T* B,
                 index_t ldb, T beta, T* C, index_t ldc) {
  if (m <= 0 || n <= 0) return;
  auto c = mat(C, m, n, ldc);
  if (k <= 0 || alpha == T{}) {
    if (beta == T{})
      c.setZero();
    else if (beta != T{1})
      c *= beta;
    return;
  }
  if (beta == T{})
    c.setZero();
  else if (beta != T{1})
    c *= beta;
  // C += alpha op(A) op(B): Eigen's GEMM accumulates into the destination.
  const bool at = ta == Trans::Yes, bt = tb == Trans::Yes;
  if (!at && !bt)
    c.noalias() += alpha * cmat(A, m, k, lda) * cmat(B, k, n, ldb);
  else if (!at && bt)
    c.noalias() += alpha * cmat(A, m, k, lda) * cmat(B, n, k, ldb).transpose();
  else if (at && !bt)
    c.noalias() += alpha * cmat(A, k, m, lda).transpose() * cmat(B, k, n, ldb);
  else
    c.noalias() += alpha * cmat(A, k, m, lda).transpose() * cmat(B, n, k, ldb).transpose();
}

// A GEMM is computed in fixed chunks of C: kGemmRowChunk rows, or
// kGemmColChunk columns when C is wider than tall, each one Eigen call; the
// threads take whole chunks. Eigen's order of summation depends on the shape
// of the call, so fixing the chunks (not the parts) gives every C element the
// same bits for every thread count.
inline constexpr index_t kGemmRowChunk = 64;
inline constexpr index_t kGemmColChunk = 64;

// The number of chunks of an m x n C.
inline index_t gemm_chunks(index_t m, index_t n) {
  return m >= n ? (m + kGemmRowChunk - 1) / kGemmRowChunk : (n + kGemmColChunk - 1) / kGemmColChunk;
}

// Part `tid` of `parts`: its share of the chunks; every C element is computed
// by exactly one part.
template <class T>
void gemm_part(int tid, int parts, Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* A,
               index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  const auto [q0, q1] = split_range(gemm_chunks(m, n), parts, tid);
  for (index_t q = q0; q < q1; ++q) {
    if (m >= n) {
      const index_t r0 = q * kGemmRowChunk, r1 = std::min(m, r0 + kGemmRowChunk);
      const T* a = ta == Trans::No ? A + r0 * lda : A + r0;
      gemm_serial(ta, tb, r1 - r0, n, k, alpha, a, lda, B, ldb, beta, C + r0 * ldc, ldc);
    } else {
      const index_t c0 = q * kGemmColChunk, c1 = std::min(n, c0 + kGemmColChunk);
      const T* b = tb == Trans::No ? B + c0 : B + c0 * ldb;
      gemm_serial(ta, tb, m, c1 - c0, k, alpha, A, lda, b, ldb, beta, C + c0, ldc);
    }
  }
}

// The threaded GEMM: the split depends only on the thread setting and shape.
template <class T>
void run(ops::gemm_t, Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* A, index_t lda, const T* B,
         index_t ldb, T beta, T* C, index_t ldc) {
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int want = static_cast<int>(std::min<index_t>(threads_for(flops, tuning().min_flops_per_thread),
                                                       std::max<index_t>(1, gemm_chunks(m, n))));
  parallel(want, [&](int tid, int parts) { gemm_part(tid, parts, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); });
}

}  // namespace ddpm::backend::cpu_detail
