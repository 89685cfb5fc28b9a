#pragma once
// A packed GEMM micro-kernel for the convolution hot path of backend::Cpu
// (AVX2 + FMA builds; elsewhere the convolution uses Eigen's GEMM only).
//
//   C[m, n] (row-major, ldc) (+)= A[m, k] * B[k, n]
//
// with A packed in blocks of kMR rows, k-major ([m/MR][k][MR], zero-padded)
// and B packed in panels of kNR columns ([n/NR][k][NR], zero-padded). Each
// thread packs a convolution's weights itself, once per call (shared, they
// crossed between the cores' caches); im2col tiles are repacked into panels
// on demand. The kMR x 16 (float) / kMR x 8 (double) register tile holds 2 kMR
// 256-bit accumulators (kMR = 6, or 8 with AVX-512VL's 32 registers); with
// AVX-512F the tile is kMR x 2 kNR, two panels, in 2 kMR 512-bit ones.
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "ddpm/backend/cpu/common.hpp"  // first: Eigen's intrinsics includes sit in its warning guard
#include "ddpm/backend/cpu/tuning.hpp"  // DDPM_CPU_PACKED_KERNEL: whether this build has the kernel
#include "ddpm/core/tensor.hpp"

#if DDPM_CPU_PACKED_KERNEL
#include <immintrin.h>
#endif

namespace ddpm::backend::cpu_detail {

// Rows of the register tile: 6 with AVX2's 16 vector registers (12
// accumulators); 8 when AVX-512VL gives 32 (16 accumulators, still 256-bit
// FMAs): 8 divides the usual channel counts (32, 64, 128, 256), where 6
// computed up to 12.5% padding rows, and loads one B panel row per 16 FMAs
// instead of per 12. Every C element sums its products in the same order
// either way (only the row blocking changes), so results do not depend on it.
#if defined(__AVX512VL__) && defined(__AVX512F__)
inline constexpr index_t kMR = 8;
#else
inline constexpr index_t kMR = 6;
#endif
template <class T>
inline constexpr index_t kNR = 64 / static_cast<index_t>(sizeof(T));  // two 256-bit vectors
// B panels per micro-kernel call: two with AVX-512 (a kMR x 2 kNR tile, 16
// accumulators), else one. One panel's 8 accumulators only just cover the
// FMA latency of two FMA units.
#if defined(__AVX512F__)
inline constexpr index_t kPanels = 2;
#else
inline constexpr index_t kPanels = 1;
#endif
// Max depth block, kKC * sizeof(T) * kPanels = kDepthBlockBytes: the B
// panels of one call fill 96 KiB of L2 for float (kNR = 16), 48 KiB for
// double. Blocks sized for L2 rather than L1 make fewer passes over C and
// over the A blocks.
inline constexpr index_t kDepthBlockBytes = 6144;
template <class T>
inline constexpr index_t kKC = kDepthBlockBytes / static_cast<index_t>(sizeof(T) * kPanels);

// Depth block for depth k: equal blocks of at most kKC (no thin last block).
template <class T>
index_t depth_block(index_t k) {
  const index_t blocks = (k + kKC<T> - 1) / kKC<T>;
  return blocks <= 1 ? k : (k + blocks - 1) / blocks;
}

namespace simd {
template <class T>
bool transpose_rows(const T* const* src, index_t q, T* dst, index_t ld);
}

// A[m, k] (row-major, lda) -> blocks of kMR rows: Ap[(i/MR)*k*MR + p*MR + i%MR].
// `trans`: A is given transposed, as At[k, m] (row-major, lda).
template <class T>
void pack_a(index_t m, index_t k, const T* A, index_t lda, bool trans, T* Ap) {
  for (index_t i0 = 0; i0 < m; i0 += kMR) {
    const index_t mr = std::min(kMR, m - i0);
    T* dst = Ap + i0 * k;
    index_t p0 = 0;
    if (!trans && mr == kMR) {
      // Whole register-block transposes where the build has them: the forward
      // convolution packs its weights on every call, which at batch 1 on
      // small images is a large part of the layer.
      const T* rows[kMR];
      for (index_t r = 0; r < kMR; ++r) rows[r] = A + (i0 + r) * lda;
      while (p0 + kMR <= k && simd::transpose_rows(rows, p0, dst + p0 * kMR, kMR)) p0 += kMR;
    }
    for (index_t p = p0; p < k; ++p) {
      for (index_t r = 0; r < mr; ++r) dst[p * kMR + r] = trans ? A[p * lda + i0 + r] : A[(i0 + r) * lda + p];
      for (index_t r = mr; r < kMR; ++r) dst[p * kMR + r] = T{};
    }
  }
}

// B[k, n] (row-major, ldb) -> panels of kNR columns: Bp[(j/NR)*k*NR + p*NR + j%NR].
template <class T>
void pack_b(index_t k, index_t n, const T* B, index_t ldb, T* Bp) {
  constexpr index_t NR = kNR<T>;
  for (index_t j0 = 0; j0 < n; j0 += NR) {
    const index_t nr = std::min(NR, n - j0);
    T* dst = Bp + j0 * k;
    if (nr == NR) {
      for (index_t p = 0; p < k; ++p) std::copy(B + p * ldb + j0, B + p * ldb + j0 + NR, dst + p * NR);
    } else {
      for (index_t p = 0; p < k; ++p) {
        std::copy(B + p * ldb + j0, B + p * ldb + j0 + nr, dst + p * NR);
        std::fill(dst + p * NR + nr, dst + (p + 1) * NR, T{});
      }
    }
  }
}

inline index_t packed_a_size(index_t m, index_t k) { return (m + kMR - 1) / kMR * kMR * k; }
template <class T>
index_t packed_b_size(index_t k, index_t n) {
  return (n + kNR<T> - 1) / kNR<T> * kNR<T> * k;
}

#if DDPM_CPU_PACKED_KERNEL

// The vector operations of one instruction set, for register_tile below.
struct Vec256 {
  template <class T>
  static constexpr index_t width = 32 / static_cast<index_t>(sizeof(T));
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256d load(const double* p) { return _mm256_loadu_pd(p); }
  static __m256 bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static __m256d bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
  static __m256d fma(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }
  static __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  static __m256d add(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
  static void store(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
  static void store(double* p, __m256d v) { _mm256_storeu_pd(p, v); }
  static __m256 zero(float) { return _mm256_setzero_ps(); }
  static __m256d zero(double) { return _mm256_setzero_pd(); }
};

namespace simd {
// dst[i * ld + j] = src[j][q + i] for i, j < lanes: a register-block transpose
// (8 x 8 floats / 4 x 4 doubles) of `lanes` rows read from `lanes` pointers.
inline void transpose_block(const float* const* src, index_t q, float* dst, index_t ld) {
  const __m256 r0 = _mm256_loadu_ps(src[0] + q), r1 = _mm256_loadu_ps(src[1] + q), r2 = _mm256_loadu_ps(src[2] + q),
               r3 = _mm256_loadu_ps(src[3] + q), r4 = _mm256_loadu_ps(src[4] + q), r5 = _mm256_loadu_ps(src[5] + q),
               r6 = _mm256_loadu_ps(src[6] + q), r7 = _mm256_loadu_ps(src[7] + q);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst + 0 * ld, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + 1 * ld, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}
inline void transpose_block(const double* const* src, index_t q, double* dst, index_t ld) {
  const __m256d r0 = _mm256_loadu_pd(src[0] + q), r1 = _mm256_loadu_pd(src[1] + q), r2 = _mm256_loadu_pd(src[2] + q),
                r3 = _mm256_loadu_pd(src[3] + q);
  const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1), t2 = _mm256_unpacklo_pd(r2, r3),
                t3 = _mm256_unpackhi_pd(r2, r3);
  _mm256_storeu_pd(dst + 0 * ld, _mm256_permute2f128_pd(t0, t2, 0x20));
  _mm256_storeu_pd(dst + 1 * ld, _mm256_permute2f128_pd(t1, t3, 0x20));
  _mm256_storeu_pd(dst + 2 * ld, _mm256_permute2f128_pd(t0, t2, 0x31));
  _mm256_storeu_pd(dst + 3 * ld, _mm256_permute2f128_pd(t1, t3, 0x31));
}
// A kMR x kMR block: dst[i * ld + j] = src[j][q + i]; false where this build
// has no such transpose (the caller then packs element by element).
template <class T>
bool transpose_rows(const T* const* src, index_t q, T* dst, index_t ld) {
  if constexpr (std::is_same_v<T, float> && kMR == 8) {
    transpose_block(src, q, dst, ld);
    return true;
  } else {
    (void)src, (void)q, (void)dst, (void)ld;
    return false;
  }
}
}  // namespace simd

// Bt[n, k] (row-major, ldb), i.e. B transposed -> panels of kNR columns of B,
// in register-block transposes of 8 x 8 floats / 4 x 4 doubles where whole.
template <class T>
void pack_bt(index_t k, index_t n, const T* Bt, index_t ldb, T* Bp) {
  constexpr index_t NR = kNR<T>, L = 32 / static_cast<index_t>(sizeof(T));
  for (index_t j0 = 0; j0 < n; j0 += NR) {
    const index_t nr = std::min(NR, n - j0);
    T* dst = Bp + j0 * k;
    index_t c = 0;
    for (; c + L <= nr; c += L) {
      const T* src[L];
      for (index_t r = 0; r < L; ++r) src[r] = Bt + (j0 + c + r) * ldb;
      index_t p = 0;
      for (; p + L <= k; p += L) simd::transpose_block(src, p, dst + p * NR + c, NR);
      for (; p < k; ++p)
        for (index_t r = 0; r < L; ++r) dst[p * NR + c + r] = src[r][p];
    }
    for (; c < nr; ++c) {
      const T* src = Bt + (j0 + c) * ldb;
      for (index_t p = 0; p < k; ++p) dst[p * NR + c] = src[p];
    }
    for (c = nr; c < NR; ++c)
      for (index_t p = 0; p < k; ++p) dst[p * NR + c] = T{};
  }
}

#if defined(__AVX512F__)
struct Vec512 {
  template <class T>
  static constexpr index_t width = 64 / static_cast<index_t>(sizeof(T));
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static __m512d load(const double* p) { return _mm512_loadu_pd(p); }
  static __m512 bcast(const float* p) { return _mm512_set1_ps(*p); }
  static __m512d bcast(const double* p) { return _mm512_set1_pd(*p); }
  static __m512 fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
  static __m512d fma(__m512d a, __m512d b, __m512d c) { return _mm512_fmadd_pd(a, b, c); }
  static __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
  static __m512d add(__m512d a, __m512d b) { return _mm512_add_pd(a, b); }
  static void store(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
  static void store(double* p, __m512d v) { _mm512_storeu_pd(p, v); }
  static __m512 zero(float) { return _mm512_setzero_ps(); }
  static __m512d zero(double) { return _mm512_setzero_pd(); }
};
#endif

// A register tile of kMR rows by `Vecs` vectors of Ops (1 or 2), over depth
// kc: C[r, v * w + j] (+)= sum_p A[p * kMR + r] * Bv[p * ldb + j], w the
// vector width, B0 and B1 the vectors' columns (B1 unused with one). mr x nr
// of it valid. Every C element sums its products in depth order.
template <class Ops, int Vecs, class T>
inline void register_tile(index_t kc, const T* __restrict A, const T* __restrict B0, const T* __restrict B1,
                          T* __restrict C, index_t ldc, bool accumulate, index_t mr, index_t nr, index_t ldb) {
  constexpr index_t W = Ops::template width<T>;
  using V = decltype(Ops::zero(T{}));
  const T* B[2] = {B0, B1};
  V c[Vecs][kMR];
#pragma GCC unroll 16
  for (int v = 0; v < Vecs; ++v)
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) c[v][r] = Ops::zero(T{});
  for (index_t p = 0; p < kc; ++p) {
    V b[Vecs];
#pragma GCC unroll 2
    for (int v = 0; v < Vecs; ++v) b[v] = Ops::load(B[v] + p * ldb);
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r) {
      const V a = Ops::bcast(A + r);
#pragma GCC unroll 2
      for (int v = 0; v < Vecs; ++v) c[v][r] = Ops::fma(a, b[v], c[v][r]);
    }
    A += kMR;
  }
  if (mr == kMR && nr == Vecs * W) {
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 2
      for (int v = 0; v < Vecs; ++v) {
        T* out = C + r * ldc + v * W;
        Ops::store(out, accumulate ? Ops::add(Ops::load(out), c[v][r]) : c[v][r]);
      }
    return;
  }
  alignas(64) T tmp[kMR * Vecs * W];
#pragma GCC unroll 8
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < Vecs; ++v) Ops::store(tmp + (r * Vecs + v) * W, c[v][r]);
  for (index_t r = 0; r < mr; ++r)
    for (index_t j = 0; j < nr; ++j)
      C[r * ldc + j] = accumulate ? C[r * ldc + j] + tmp[r * Vecs * W + j] : tmp[r * Vecs * W + j];
}

// One kMR x kNR tile of C (mr x nr valid) over depth kc; B's rows of kNR
// values are ldb apart (kNR in a packed panel). A kNR row is one 512-bit
// vector with AVX-512 (faster even on cores that split 512-bit FMAs in two),
// else two 256-bit ones: the same FMA sequence per C element (bit-identical
// results).
template <class T>
inline void micro_kernel(index_t kc, const T* __restrict A, const T* __restrict B, T* __restrict C, index_t ldc,
                         bool accumulate, index_t mr, index_t nr, index_t ldb = kNR<T>) {
#if defined(__AVX512F__)
  register_tile<Vec512, 1>(kc, A, B, B, C, ldc, accumulate, mr, nr, ldb);
#else
  register_tile<Vec256, 2>(kc, A, B, B + Vec256::width<T>, C, ldc, accumulate, mr, nr, ldb);
#endif
}

// A kMR x kPanels kNR tile of C (mr x nr valid, nr <= kPanels kNR) over depth
// kc: B's first kNR columns at B0, the next at B1 (rows ldb apart in both).
// Each C element sums its products in the same order as micro_kernel.
template <class T>
inline void micro_kernel_wide(index_t kc, const T* __restrict A, const T* __restrict B0, const T* __restrict B1,
                              T* __restrict C, index_t ldc, bool accumulate, index_t mr, index_t nr, index_t ldb) {
#if defined(__AVX512F__)
  if (nr > kNR<T>) return register_tile<Vec512, 2>(kc, A, B0, B1, C, ldc, accumulate, mr, nr, ldb);
#endif
  (void)B1;
  micro_kernel(kc, A, B0, C, ldc, accumulate, mr, std::min(nr, kNR<T>), ldb);
}

// C[m, n] (ldc) = (or += when accumulate) Ap * Bp, both packed over the same depth k.
template <class T>
void packed_gemm(index_t m, index_t n, index_t k, const T* Ap, const T* Bp, T* C, index_t ldc, bool accumulate) {
  constexpr index_t NR = kNR<T>;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (index_t i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, T{});
    return;
  }
  // Panel-major: the m x kNR column block of C stays in L1 over all depth
  // blocks instead of making one trip through L2 per depth block.
  const index_t KC = depth_block<T>(k);
  for (index_t j0 = 0; j0 < n; j0 += kPanels * NR)
    for (index_t k0 = 0; k0 < k; k0 += KC) {
      const index_t kc = std::min(KC, k - k0);
      const bool acc = accumulate || k0 > 0;
      const T* b = Bp + j0 * k + k0 * NR;
      for (index_t i0 = 0; i0 < m; i0 += kMR)
        micro_kernel_wide(kc, Ap + i0 * k + k0 * kMR, b, b + NR * k, C + i0 * ldc + j0, ldc, acc,
                          std::min(kMR, m - i0), std::min(kPanels * NR, n - j0), NR);
    }
}

// C[m, n] (ldc) = (or += when accumulate) Ap * B with B row-major (ldb)
// read in place, without packing: every run of kPanels kNR columns must be
// readable (columns from n on: any value; they are computed and dropped).
// For B whose rows are contiguous runs (Winograd's transformed tiles, the
// input of a 1x1 convolution).
template <class T>
void packed_gemm_b_rows(index_t m, index_t n, index_t k, const T* Ap, const T* B, index_t ldb, T* C, index_t ldc,
                        bool accumulate = false) {
  constexpr index_t NR = kNR<T>;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (index_t i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, T{});
    return;
  }
  const index_t KC = depth_block<T>(k);
  for (index_t j0 = 0; j0 < n; j0 += kPanels * NR)  // panel-major, as packed_gemm
    for (index_t k0 = 0; k0 < k; k0 += KC) {
      const index_t kc = std::min(KC, k - k0);
      const T* b = B + k0 * ldb + j0;
      for (index_t i0 = 0; i0 < m; i0 += kMR)
        micro_kernel_wide(kc, Ap + i0 * k + k0 * kMR, b, b + NR, C + i0 * ldc + j0, ldc, accumulate || k0 > 0,
                          std::min(kMR, m - i0), std::min(kPanels * NR, n - j0), ldb);
    }
}

// C[m, n] (ldc) (+)= Ap * B with B's panels made on demand, each used for all
// of A while it sits in L1: pack(j0, nr, k0, kc, dst) writes rows k0..k0+kc of
// columns j0..j0+nr of B as kc rows of kNR (columns from nr on: any finite
// value; they are computed and dropped).
template <class T, class Pack>
void packed_gemm_lazy(index_t m, index_t n, index_t k, const T* Ap, Pack&& pack, T* C, index_t ldc,
                      bool accumulate) {
  constexpr index_t NR = kNR<T>;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (index_t i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, T{});
    return;
  }
  alignas(64) T panel[kPanels][kKC<T> * NR];
  const index_t KC = depth_block<T>(k);
  for (index_t j0 = 0; j0 < n; j0 += kPanels * NR) {  // panel-major, as packed_gemm
    const index_t nr = std::min(kPanels * NR, n - j0);
    for (index_t k0 = 0; k0 < k; k0 += KC) {
      const index_t kc = std::min(KC, k - k0);
      const bool acc = accumulate || k0 > 0;
      for (index_t q = 0; q * NR < nr; ++q) pack(j0 + q * NR, std::min(NR, nr - q * NR), k0, kc, panel[q]);
      for (index_t i0 = 0; i0 < m; i0 += kMR)
        micro_kernel_wide(kc, Ap + i0 * k + k0 * kMR, panel[0], panel[kPanels - 1], C + i0 * ldc + j0, ldc, acc,
                          std::min(kMR, m - i0), nr, NR);
    }
  }
}

#else
namespace simd {
template <class T>
bool transpose_rows(const T* const*, index_t, T*, index_t) {
  return false;
}
}  // namespace simd
#endif  // DDPM_CPU_PACKED_KERNEL

}  // namespace ddpm::backend::cpu_detail
