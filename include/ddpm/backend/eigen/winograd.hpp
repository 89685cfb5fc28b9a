#pragma once
// Winograd F(2x2, 3x3) convolution for backend::Eigen (Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", CVPR 2016).
//
// Each 2x2 block of outputs (a "tile") of a 3x3 stride-1 convolution is
//   Y = A^T [ sum_ci (G g G^T) .* (B^T d B) ] A
// with d the 4x4 input patch under the tile and g the 3x3 filter: 16
// multiply-adds per tile and channel pair instead of 36. Over the channels the
// 16 elementwise products are 16 GEMMs, one per position xi of the 4x4
// transformed tile,
//   M[xi] (Co x tiles) = U[xi] (Co x Ci) * V[xi] (Ci x tiles),
// run on the packed micro-kernel (kernel.hpp). The transforms only add,
// subtract and halve, so results differ from the direct sum by a few
// roundings (tested: float error against a double reference no larger than
// the direct path's).
//
// Tiles go in blocks of whole tile rows (across images when they are small),
// sized so that V and M stay in L2. Threads split the tile rows: every output
// is computed by one thread, in an order that does not depend on the thread
// count. Used for 3x3 stride-1 layers with enough channels and tiles (see
// below), forward and (as the convolution of dY with the flipped filters)
// the input gradient of backward.
#include <algorithm>
#include <cstddef>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ddpm/backend/eigen/common.hpp"
#include "ddpm/backend/eigen/kernel.hpp"

namespace ddpm::backend::eigen_detail {

#if DDPM_EIGEN_PACKED_KERNEL

// Set to false to use the direct (GEMM) convolution everywhere (tests compare both).
inline bool conv_use_winograd = true;
// When Winograd pays (see winograd_applies in conv.hpp). Measured against the
// direct path on Zen 4, 2 threads, batch 16: 32 -> 32 channels at 28x28 1.3x
// forward and 1.5x input gradient, 64 -> 64 at 14x14 1.25x, 128 -> 128 at
// 32x32 1.5x, 256 -> 256 at 16x16 1.8x and at 4x4 1.5x, 512 -> 256 at 4x4
// 1.7x; but 64 -> 64 at 7x7 0.84x: on small images the transforms (short
// tile rows) cost what the multiplies save unless the layer is wide. With
// few tiles the filter transform is not paid back: batch 1, 256 -> 256 at
// 16x16 (64 tiles) 0.85x, 32 -> 32 at 28x28 (196 tiles) 0.85x; 128 -> 128 at
// 32x32 (256 tiles) 1.2x. (Tests lower all four to check small shapes.)
inline index_t winograd_min_channels = 32;         // in and out
inline index_t winograd_min_channels_small = 128;  // in and out, images of at most 8x8
inline index_t winograd_min_tiles = 256;           // 2x2 output tiles in the batch
inline index_t winograd_min_tiles_small = 64;      // the same, images of at most 8x8

struct WinogradGeom {
  index_t N, Ci, Co, H, W, pt, pl, OH, OW, TH, TW;
  WinogradGeom(index_t n, index_t ci, index_t co, index_t h, index_t w, index_t pad_top, index_t pad_bottom,
               index_t pad_left, index_t pad_right)
      : N(n), Ci(ci), Co(co), H(h), W(w), pt(pad_top), pl(pad_left), OH(h + pad_top + pad_bottom - 2),
        OW(w + pad_left + pad_right - 2), TH((OH + 1) / 2), TW((OW + 1) / 2) {}
};

// Up = the 16 matrices U[xi] = (G g G^T)[xi], each packed as the A operand
// (rows x depth, pack_a's layout), where g is the 3x3 filter of row r and
// depth d: tap k = kh * 3 + kw is filter(r, d, k). Row blocks [b0, b1) of kMR rows.
//   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
template <class T, class Filter>
void winograd_weights(index_t rows, index_t depth, Filter filter, T* Up, index_t b0, index_t b1) {
  const index_t asz = packed_a_size(rows, depth);
  for (index_t blk = b0; blk < b1; ++blk)
    for (index_t d = 0; d < depth; ++d) {
      // The kMR rows of this block side by side (lane rr), so that each of the
      // 16 results is one contiguous store of kMR values.
      T g[9][kMR];
      for (index_t rr = 0; rr < kMR; ++rr) {
        const index_t r = blk * kMR + rr;
        for (int k = 0; k < 9; ++k) g[k][rr] = r < rows ? filter(r, d, k) : T{};
      }
      T* out = Up + blk * kMR * depth + d * kMR;
      for (index_t rr = 0; rr < kMR; ++rr) {
        T h[3][4];  // g G^T
        for (int k = 0; k < 3; ++k) {
          const T g0 = g[3 * k][rr], g1 = g[3 * k + 1][rr], g2 = g[3 * k + 2][rr];
          h[k][0] = g0;
          h[k][1] = (g0 + g1 + g2) * T(0.5);
          h[k][2] = (g0 - g1 + g2) * T(0.5);
          h[k][3] = g2;
        }
        for (int c = 0; c < 4; ++c) {  // G (g G^T)
          out[(0 + c) * asz + rr] = h[0][c];
          out[(4 + c) * asz + rr] = (h[0][c] + h[1][c] + h[2][c]) * T(0.5);
          out[(8 + c) * asz + rr] = (h[0][c] - h[1][c] + h[2][c]) * T(0.5);
          out[(12 + c) * asz + rr] = h[2][c];
        }
      }
    }
}

// One column c of B^T e for n tiles: (a0 - a2, a1 + a2, a2 - a1, a1 - a3)
// with a_r = (d B)[r][c]; separate pointers so that the loop vectorises.
template <class T>
inline void winograd_in_column(const T* __restrict a0, const T* __restrict a1, const T* __restrict a2,
                               const T* __restrict a3, T* __restrict v0, T* __restrict v1, T* __restrict v2,
                               T* __restrict v3, index_t n) {
  for (index_t l = 0; l < n; ++l) {
    v0[l] = a0[l] - a2[l];
    v1[l] = a1[l] + a2[l];
    v2[l] = a2[l] - a1[l];
    v3[l] = a1[l] - a3[l];
  }
}

// Y = A^T m A, A^T = [1 1 1 0; 0 1 -1 -1], for tiles [0, n) of one output
// channel: m[xi * ms + t] -> O[(2 * dr + dc) * ldo + t].
template <class T>
inline void winograd_out_tiles(const T* __restrict m, index_t ms, index_t n, T* __restrict O, index_t ldo) {
  for (index_t t = 0; t < n; ++t) {
    T f[4][2];
    for (int r = 0; r < 4; ++r) {  // m A
      const T m0 = m[(r * 4) * ms + t], m1 = m[(r * 4 + 1) * ms + t], m2 = m[(r * 4 + 2) * ms + t],
              m3 = m[(r * 4 + 3) * ms + t];
      f[r][0] = m0 + m1 + m2;
      f[r][1] = m1 - m2 - m3;
    }
    for (int c = 0; c < 2; ++c) {  // A^T (m A)
      O[c * ldo + t] = f[0][c] + f[1][c] + f[2][c];
      O[(2 + c) * ldo + t] = f[1][c] - f[2][c] - f[3][c];
    }
  }
}

// One zero-padded input row (line[q] = padded column q, readable up to
// 2 * tw + 64) -> (d B)[r][c] for the tw tiles along it:
//   (d B)[r] = (d0 - d2, d1 + d2, d2 - d1, d1 - d3),  d_c = line[2j + c].
template <class T>
void winograd_row_dB(const T* line, index_t tw, T* e0, T* e1, T* e2, T* e3) {
  for (index_t j = 0; j < tw; ++j) {
    const T d0 = line[2 * j], d1 = line[2 * j + 1], d2 = line[2 * j + 2], d3 = line[2 * j + 3];
    e0[j] = d0 - d2;
    e1[j] = d1 + d2;
    e2[j] = d2 - d1;
    e3[j] = d1 - d3;
  }
}

// dst[2j] = o0[j] + bias, dst[2j + 1] = o1[j] + bias for the ow columns of one output row.
template <class T>
void winograd_store_row(const T* o0, const T* o1, T bias, index_t ow, T* dst) {
  for (index_t j = 0; 2 * j < ow; ++j) {
    dst[2 * j] = o0[j] + bias;
    if (2 * j + 1 < ow) dst[2 * j + 1] = o1[j] + bias;
  }
}

#if defined(__AVX512F__)
// The same for float, 16 tiles (32 columns) per step: the rows are short (7
// or 14 tiles on 14x14 and 28x28 images), too short for the compiler's loops.
inline __mmask16 first_lanes(index_t n) { return static_cast<__mmask16>((1u << std::min<index_t>(n, 16)) - 1u); }

inline void winograd_row_dB(const float* line, index_t tw, float* e0, float* e1, float* e2, float* e3) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (index_t j0 = 0; j0 < tw; j0 += 16) {
    const float* p = line + 2 * j0;
    const __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
    const __m512 c = _mm512_loadu_ps(p + 2), d = _mm512_loadu_ps(p + 18);
    const __m512 d0 = _mm512_permutex2var_ps(a, even, b), d1 = _mm512_permutex2var_ps(a, odd, b);
    const __m512 d2 = _mm512_permutex2var_ps(c, even, d), d3 = _mm512_permutex2var_ps(c, odd, d);
    const __mmask16 m = first_lanes(tw - j0);
    _mm512_mask_storeu_ps(e0 + j0, m, _mm512_sub_ps(d0, d2));
    _mm512_mask_storeu_ps(e1 + j0, m, _mm512_add_ps(d1, d2));
    _mm512_mask_storeu_ps(e2 + j0, m, _mm512_sub_ps(d2, d1));
    _mm512_mask_storeu_ps(e3 + j0, m, _mm512_sub_ps(d1, d3));
  }
}

inline void winograd_store_row(const float* o0, const float* o1, float bias, index_t ow, float* dst) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 vb = _mm512_set1_ps(bias);
  for (index_t j0 = 0; 2 * j0 < ow; j0 += 16) {
    const index_t n = ow - 2 * j0;  // columns left
    const __mmask16 m = first_lanes((n + 1) / 2);
    const __m512 a = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o0 + j0), vb);
    const __m512 b = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o1 + j0), vb);
    _mm512_mask_storeu_ps(dst + 2 * j0, first_lanes(n), _mm512_permutex2var_ps(a, lo, b));
    if (n > 16) _mm512_mask_storeu_ps(dst + 2 * j0 + 16, first_lanes(n - 16), _mm512_permutex2var_ps(a, hi, b));
  }
}
#endif

// Tile rows [u0, u1) (row u = image u / TH, tile row u % TH) of y = conv(x) + b.
template <class T>
void winograd_rows(const WinogradGeom& g, const T* x, const T* Up, const T* b, T* y, index_t u0, index_t u1) {
  constexpr index_t NR = kNR<T>;
  if (u1 <= u0) return;
  // Tile rows per block: V (16 x Ci x tiles) and M (16 x Co x tiles) in about
  // 512 KiB; for wide layers (under 2 panels of tiles in that budget) 4 panels
  // instead, as each U[xi] (Co x Ci) is read once per block and is then the
  // larger stream (measured: 512 -> 256 channels at 4x4 went 1.35x faster).
  const index_t budget = static_cast<index_t>(512 * 1024 / sizeof(T)) / (16 * (g.Ci + g.Co));
  const index_t rows_per_block = std::max<index_t>(1, (budget < 2 * NR ? 4 * NR : budget) / g.TW);
  const index_t tb = (rows_per_block * g.TW + NR - 1) / NR * NR;  // tiles per block, whole panels
  const index_t ldm = tb + NR;  // off a power of two: the kMR stored rows use different L1 sets
  const index_t asz = packed_a_size(g.Co, g.Ci), bsz = packed_b_size<T>(g.Ci, tb);
  T* Vp = scratch<T>(kWinoV, static_cast<std::size_t>(16 * bsz));
  T* M = scratch<T>(kWinoM, static_cast<std::size_t>(16 * g.Co * ldm));
  const index_t lw = 2 * g.TW + 64;  // one zero-padded input row, with slack for whole-vector loads
  T* D = scratch<T>(kWinoD, static_cast<std::size_t>(16 * tb + 4 * tb + lw));
  T* O = D + 16 * tb;    // 4 x tb: the 2x2 outputs of each tile
  T* line = O + 4 * tb;  // line[q]: padded column q of the current input row
  const index_t wcopy = std::min(g.W, lw - g.pl);
  std::fill(line, line + lw, T{});  // only [pl, pl + W) is ever rewritten

  for (index_t ub = u0; ub < u1; ub += rows_per_block) {
    const index_t ue = std::min(u1, ub + rows_per_block), nt = (ue - ub) * g.TW, ntp = (nt + NR - 1) / NR * NR;
    for (int k = 0; k < 16; ++k) std::fill(D + k * tb + nt, D + k * tb + ntp, T{});
    // V[xi][ci][tiles] = B^T d B, written as packed B panels.
    //   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
    for (index_t ci = 0; ci < g.Ci; ++ci) {
      // D[r * 4 + c][t] = (d B)[r][c] of tile t, from the even and odd columns
      // of input row r: (d B)[r] = (d0 - d2, d1 + d2, d2 - d1, d1 - d3).
      for (index_t u = ub; u < ue; ++u) {
        const index_t n = u / g.TH, i = u % g.TH, t0 = (u - ub) * g.TW;
        for (index_t r = 0; r < 4; ++r) {
          T *e0 = D + (r * 4) * tb + t0, *e1 = e0 + tb, *e2 = e1 + tb, *e3 = e2 + tb;
          const index_t ih = 2 * i + r - g.pt;
          if (ih < 0 || ih >= g.H) {
            for (T* e : {e0, e1, e2, e3}) std::fill(e, e + g.TW, T{});
            continue;
          }
          const T* row = x + ((n * g.Ci + ci) * g.H + ih) * g.W;
          std::copy(row, row + wcopy, line + g.pl);
          winograd_row_dB(static_cast<const T*>(line), g.TW, e0, e1, e2, e3);
        }
      }
      for (index_t p = 0; p < ntp; p += NR) {
        T* __restrict out = Vp + p * g.Ci + ci * NR;  // panel p / NR, depth row ci
        const T* __restrict e = D + p;
        for (int c = 0; c < 4; ++c)  // B^T (d B), column c
          winograd_in_column(e + c * tb, e + (4 + c) * tb, e + (8 + c) * tb, e + (12 + c) * tb, out + c * bsz,
                             out + (4 + c) * bsz, out + (8 + c) * bsz, out + (12 + c) * bsz, NR);
      }
    }
    for (int xi = 0; xi < 16; ++xi) packed_gemm(g.Co, nt, g.Ci, Up + xi * asz, Vp + xi * bsz, M + xi * g.Co * ldm, ldm, false);
    // Y = A^T m A per tile, A^T = [1 1 1 0; 0 1 -1 -1], then into y (+ bias).
    for (index_t co = 0; co < g.Co; ++co) {
      winograd_out_tiles(static_cast<const T*>(M + co * ldm), g.Co * ldm, nt, O, tb);
      const T bias = b ? b[co] : T{};
      for (index_t u = ub; u < ue; ++u) {
        const index_t n = u / g.TH, i = u % g.TH, t0 = (u - ub) * g.TW;
        for (index_t dr = 0; dr < 2 && 2 * i + dr < g.OH; ++dr) {
          T* dst = y + ((n * g.Co + co) * g.OH + 2 * i + dr) * g.OW;
          winograd_store_row(static_cast<const T*>(O + (2 * dr) * tb + t0),
                             static_cast<const T*>(O + (2 * dr + 1) * tb + t0), bias, g.OW, dst);
        }
      }
    }
  }
}

// y = conv3x3(x, filter) + b, stride 1: filter(co, ci, k) is tap k = kh * 3 + kw
// of the filter from input channel ci to output channel co.
template <class T, class Filter>
void winograd_conv(const WinogradGeom& g, const T* x, Filter filter, const T* b, T* y) {
  const index_t blocks = (g.Co + kMR - 1) / kMR;
  T* Up = scratch<T>(kWinoU, static_cast<std::size_t>(16 * packed_a_size(g.Co, g.Ci)));
  parallel(threads_for(40.0 * static_cast<double>(g.Co * g.Ci), 1e5), [&](int tid, int parts) {
    const auto [b0, b1] = split_range(blocks, parts, tid);
    winograd_weights(g.Co, g.Ci, filter, Up, b0, b1);
  });
  const double flops = 2.0 * 16 * static_cast<double>(g.N * g.TH * g.TW) * static_cast<double>(g.Ci * g.Co);
  parallel(threads_for(flops, 2e5), [&](int tid, int parts) {
    const auto [u0, u1] = split_range(g.N * g.TH, parts, tid);
    winograd_rows(g, x, static_cast<const T*>(Up), b, y, u0, u1);
  });
}

#endif  // DDPM_EIGEN_PACKED_KERNEL

}  // namespace ddpm::backend::eigen_detail
