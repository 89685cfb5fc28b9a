#pragma once
// Winograd F(2x2, 3x3) convolution for backend::Cpu (Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", CVPR 2016).
//
// Each 2x2 block of outputs (a "tile") of a 3x3 stride-1 convolution is
//   Y = A^T [ sum_ci (G g G^T) .* (B^T d B) ] A
// with d the 4x4 input patch under the tile and g the 3x3 filter: 16
// multiply-adds per tile and channel pair instead of 36. Over the channels the
// 16 elementwise products are 16 GEMMs, one per position xi of the 4x4
// transformed tile,
//   M[xi] (Co x tiles) = U[xi] (Co x Ci) * V[xi] (Ci x tiles),
// run on the micro-kernel (kernel.hpp), which reads V in place: the input
// transform writes each channel's tiles as contiguous rows, and a GEMM panel
// of kNR tiles is then kNR contiguous values per channel (no packing). The
// transforms only add, subtract and halve, so results differ from the direct
// sum by a few roundings (tested: float error against a double reference no
// larger than the direct path's).
//
// Tiles go in blocks of whole tile rows (across images when they are small),
// sized so that V and M stay in L2. Threads split the tile rows: every output
// is computed by one thread, in an order that does not depend on the thread
// count. Used for 3x3 stride-1 layers with enough channels and tiles (the
// Tuning limits; winograd_applies in conv.hpp): forward, the input gradient
// of backward (as the convolution of dY with the flipped filters) and its
// weight gradient (the same transforms of x and of dY, 16 GEMMs over the
// tiles; see "weight gradient" below).
#include <algorithm>
#include <cstddef>
#include <utility>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ddpm/backend/cpu/common.hpp"
#include "ddpm/backend/cpu/kernel.hpp"

namespace ddpm::backend::cpu_detail {

#if DDPM_CPU_PACKED_KERNEL

// Taken where tuning().use_winograd and winograd_applies (conv.hpp) allow;
// the limits and the working-set budgets per block of tile rows
// (winograd_fwd_bytes, winograd_dw_bytes) are Tuning fields.

// The weight gradient's blocks span at least this many tiles (the depth of
// its GEMMs): fewer leave the micro-kernel too short a depth to pay for
// packing its operands.
inline constexpr index_t kWinogradDwMinTiles = 64;
// Forward blocks of wide layers (V and M of under 2 panels of tiles in the
// budget) take this many panels instead: each U[xi] (Co x Ci) is read once
// per block and is then the larger stream.
inline constexpr index_t kWinogradWidePanels = 4;
// The work of the weight gradient's last step per (co, ci) pair, in the unit
// of Tuning::min_touches_per_thread: the 16 values of Mw summed over the
// threads' partials, the G^T . G transform and 9 updates of dw.
inline constexpr double kWinogradDwOutWork = 40.0;

struct WinogradGeom {
  index_t N, Ci, Co, H, W, pt, pl, OH, OW, TH, TW;
  WinogradGeom(index_t n, index_t ci, index_t co, index_t h, index_t w, index_t pad_top, index_t pad_bottom,
               index_t pad_left, index_t pad_right)
      : N(n), Ci(ci), Co(co), H(h), W(w), pt(pad_top), pl(pad_left), OH(h + pad_top + pad_bottom - 2),
        OW(w + pad_left + pad_right - 2), TH((OH + 1) / 2), TW((OW + 1) / 2) {}
};

// Stride between the 16 planes (one per position xi of the 4x4 transformed
// tile) of a buffer holding n values per plane: n rounded up to an odd number
// of 64-byte lines. The 16 values of one tile are stored or loaded together;
// at n * sizeof(T) a multiple of 2 KiB (any 32 channels of whole lines) they
// would fall in one or two L1 sets and miss.
template <class T>
index_t winograd_plane_stride(index_t n) {
  constexpr index_t line = 64 / static_cast<index_t>(sizeof(T));
  const index_t s = (n + line - 1) / line * line;
  return (s / line) % 2 ? s : s + line;
}

// The 3x3 filters of a Winograd convolution: the 9 taps (k = kh * 3 + kw) of
// row r and depth d at w + r * row_stride + d * depth_stride, in reverse
// order when `flipped` (the input gradient convolves with the flipped filters).
template <class T>
struct Filter3x3 {
  const T* w;
  index_t row_stride, depth_stride;
  bool flipped = false;
};

// Up = the 16 matrices U[xi] = (G g G^T)[xi], each packed as the A operand
// (rows x depth, pack_a's layout) winograd_plane_stride apart.
//   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
template <class T>
void winograd_weights(index_t rows, index_t depth, const Filter3x3<T>& f, T* Up) {
  static constexpr T kZeroTaps[9] = {};
  const index_t asz = winograd_plane_stride<T>(packed_a_size(rows, depth));
  for (index_t blk = 0; blk * kMR < rows; ++blk)
    for (index_t d = 0; d < depth; ++d) {
      // The kMR rows of this block side by side (lane rr, innermost in every
      // loop so that each step is one vector op over the rows), and each of
      // the 16 results one contiguous store of kMR values. The taps come in
      // by register-block transposes of the rows' taps where the build has
      // them (a gather of 9 x kMR scalars would dominate the transform).
      T g[9][kMR], h[3][4][kMR];  // the filters, then g G^T
      const T* src[kMR];
      for (index_t rr = 0; rr < kMR; ++rr) {
        const index_t r = blk * kMR + rr;
        src[rr] = r < rows ? f.w + r * f.row_stride + d * f.depth_stride : kZeroTaps;
      }
      index_t k0 = 0;
      if (kMR <= 9 && simd::transpose_rows(src, 0, &g[0][0], kMR)) k0 = kMR;
      for (index_t k = k0; k < 9; ++k)
        for (index_t rr = 0; rr < kMR; ++rr) g[k][rr] = src[rr][k];
      if (f.flipped)
        for (int k = 0; k < 4; ++k) std::swap(g[k], g[8 - k]);
      for (int k = 0; k < 3; ++k)
        for (index_t rr = 0; rr < kMR; ++rr) {
          const T g0 = g[3 * k][rr], g1 = g[3 * k + 1][rr], g2 = g[3 * k + 2][rr];
          h[k][0][rr] = g0;
          h[k][1][rr] = (g0 + g1 + g2) * T(0.5);
          h[k][2][rr] = (g0 - g1 + g2) * T(0.5);
          h[k][3][rr] = g2;
        }
      T* out = Up + blk * kMR * depth + d * kMR;
      for (int c = 0; c < 4; ++c)  // G (g G^T)
        for (index_t rr = 0; rr < kMR; ++rr) {
          out[(0 + c) * asz + rr] = h[0][c][rr];
          out[(4 + c) * asz + rr] = (h[0][c][rr] + h[1][c][rr] + h[2][c][rr]) * T(0.5);
          out[(8 + c) * asz + rr] = (h[0][c][rr] - h[1][c][rr] + h[2][c][rr]) * T(0.5);
          out[(12 + c) * asz + rr] = h[2][c][rr];
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

// (d B)[r][c] for the tw tiles along one input row:
//   (d B)[r] = (d0 - d2, d1 + d2, d2 - d1, d1 - d3),  d_c = padded column 2j + c,
// padded column q = row[q - pl] for q - pl in [0, W), else 0. `line` holds
// 2 tw + 64 values, zero outside [pl, pl + W): the padded row is copied there
// (the AVX-512 float version reads the row in place instead).
template <class T>
void winograd_row_dB(const T* row, index_t W, index_t pl, T* line, index_t tw, T* e0, T* e1, T* e2, T* e3) {
  std::copy(row, row + std::min(W, 2 * tw + 64 - pl), line + pl);
  for (index_t j = 0; j < tw; ++j) {
    const T d0 = line[2 * j], d1 = line[2 * j + 1], d2 = line[2 * j + 2], d3 = line[2 * j + 3];
    e0[j] = d0 - d2;
    e1[j] = d1 + d2;
    e2[j] = d2 - d1;
    e3[j] = d1 - d3;
  }
}

// Z[(4 a + b) * zs + j] = (A dY A^T)[a][b] for the tw tiles along a pair of
// output rows r0, r1 (r1 null past the last row), ow columns each (zero
// past them), A = [1 0; 1 1; 1 -1; 0 -1]:
//   Q[r] = dY[r] A^T = (d0, d0 + d1, d0 - d1, -d1),  Z = (Q0, Q0 + Q1, Q0 - Q1, -Q1).
// `lines` holds 2 x 2 tw values, zero past column ow.
template <class T>
void winograd_row_pair_dA(const T* r0, const T* r1, index_t ow, T* lines, index_t tw, T* z, index_t zs) {
  T* l0 = lines;
  T* l1 = lines + 2 * tw;
  std::copy(r0, r0 + ow, l0);
  if (r1)
    std::copy(r1, r1 + ow, l1);
  else
    std::fill(l1, l1 + ow, T{});
  for (index_t j = 0; j < tw; ++j) {
    const T a0 = l0[2 * j], b0 = l0[2 * j + 1], a1 = l1[2 * j], b1 = l1[2 * j + 1];
    const T q0[4] = {a0, a0 + b0, a0 - b0, -b0}, q1[4] = {a1, a1 + b1, a1 - b1, -b1};
    for (int b = 0; b < 4; ++b) {
      z[b * zs + j] = q0[b];
      z[(4 + b) * zs + j] = q0[b] + q1[b];
      z[(8 + b) * zs + j] = q0[b] - q1[b];
      z[(12 + b) * zs + j] = -q1[b];
    }
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
// or 14 tiles on 14x14 and 28x28 images), too short for the compiler's loops,
// and copying them (a memmove call per row) would cost as much as the
// transform.
inline __mmask16 first_lanes(index_t n) { return static_cast<__mmask16>((1u << std::min<index_t>(n, 16)) - 1u); }

// Lanes l of row[s + l] inside [0, n).
inline __mmask16 clip_mask(index_t n, index_t s) {
  const index_t lo = std::max<index_t>(0, -s), hi = std::min<index_t>(16, n - s);
  return hi <= lo ? __mmask16{0} : static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// row[s + l] for l < 16, zero where s + l is outside [0, n); masked lanes are
// not read (AVX-512 masked loads do not fault).
inline __m512 load_clipped(const float* row, index_t n, index_t s) {
  return _mm512_maskz_loadu_ps(clip_mask(n, s), reinterpret_cast<const char*>(row) + s * static_cast<index_t>(sizeof(float)));
}

inline const __m512i kEven = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
inline const __m512i kOdd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);

// winograd_row_dB for 16 tiles, into registers: the row read at s + (0, 16,
// 2, 18) under the clip masks m and `live` (0: a row past the image's edge,
// zeros without a memory access).
inline void winograd_row_dB16(const char* row, index_t s, const __mmask16 (&m)[4], __mmask16 live, __m512 (&e)[4]) {
  constexpr index_t off[4] = {0, 16, 2, 18};
  __m512 v[4];
  for (int q = 0; q < 4; ++q)
    v[q] = _mm512_maskz_loadu_ps(m[q] & live, row + (s + off[q]) * static_cast<index_t>(sizeof(float)));
  const __m512 d0 = _mm512_permutex2var_ps(v[0], kEven, v[1]), d1 = _mm512_permutex2var_ps(v[0], kOdd, v[1]);
  const __m512 d2 = _mm512_permutex2var_ps(v[2], kEven, v[3]), d3 = _mm512_permutex2var_ps(v[2], kOdd, v[3]);
  e[0] = _mm512_sub_ps(d0, d2);
  e[1] = _mm512_add_ps(d1, d2);
  e[2] = _mm512_sub_ps(d2, d1);
  e[3] = _mm512_sub_ps(d1, d3);
}

inline void winograd_row_pair_dA(const float* r0, const float* r1, index_t ow, float*, index_t tw, float* z,
                                 index_t zs) {
  const __m512 zero = _mm512_setzero_ps();
  for (index_t j0 = 0; j0 < tw; j0 += 16) {
    const index_t s = 2 * j0;
    const __m512 x0 = load_clipped(r0, ow, s), y0 = load_clipped(r0, ow, s + 16);
    const __m512 a0 = _mm512_permutex2var_ps(x0, kEven, y0), b0 = _mm512_permutex2var_ps(x0, kOdd, y0);
    __m512 a1 = zero, b1 = zero;
    if (r1) {
      const __m512 x1 = load_clipped(r1, ow, s), y1 = load_clipped(r1, ow, s + 16);
      a1 = _mm512_permutex2var_ps(x1, kEven, y1);
      b1 = _mm512_permutex2var_ps(x1, kOdd, y1);
    }
    const __m512 q0[4] = {a0, _mm512_add_ps(a0, b0), _mm512_sub_ps(a0, b0), _mm512_sub_ps(zero, b0)};
    const __m512 q1[4] = {a1, _mm512_add_ps(a1, b1), _mm512_sub_ps(a1, b1), _mm512_sub_ps(zero, b1)};
    const __mmask16 m = first_lanes(tw - j0);
    float* o = z + j0;
    for (int b = 0; b < 4; ++b) {
      _mm512_mask_storeu_ps(o + b * zs, m, q0[b]);
      _mm512_mask_storeu_ps(o + (4 + b) * zs, m, _mm512_add_ps(q0[b], q1[b]));
      _mm512_mask_storeu_ps(o + (8 + b) * zs, m, _mm512_sub_ps(q0[b], q1[b]));
      _mm512_mask_storeu_ps(o + (12 + b) * zs, m, _mm512_sub_ps(zero, q1[b]));
    }
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

// V[xi * vs + t] = (B^T d B)[xi] for the tiles t of tile rows [ub, ue) of one
// input channel xc (x of that channel: H x W; row u = image u / TH, tile row
// u % TH, its tiles from t = (u - ub) * TW), B^T = [1 0 -1 0; 0 1 1 0;
// 0 -1 1 0; 0 1 0 -1]. The channel of image n is xc + n * xs. work: 16 TW +
// 2 TW + 64 values (E rows, then `line`, zero outside [pl, pl + W) as for
// winograd_row_dB).
template <class T>
void winograd_input_tiles(const WinogradGeom& g, const T* xc, index_t xs, index_t ub, index_t ue, T* V, index_t vs,
                          T* work) {
  T* E = work;  // E[(r * 4 + c) * TW + j] = (d B)[r][c] of tile j
  T* line = work + 16 * g.TW;
  for (index_t u = ub; u < ue; ++u) {
    const index_t n = u / g.TH, i = u % g.TH, t0 = (u - ub) * g.TW;
    for (index_t r = 0; r < 4; ++r) {
      T *e0 = E + (r * 4) * g.TW, *e1 = e0 + g.TW, *e2 = e1 + g.TW, *e3 = e2 + g.TW;
      const index_t ih = 2 * i + r - g.pt;
      if (ih < 0 || ih >= g.H) {
        std::fill(e0, e0 + 4 * g.TW, T{});
        continue;
      }
      winograd_row_dB(xc + n * xs + ih * g.W, g.W, g.pl, line, g.TW, e0, e1, e2, e3);
    }
    T* out = V + t0;
    for (int c = 0; c < 4; ++c)  // B^T (d B), column c
      winograd_in_column(static_cast<const T*>(E + c * g.TW), static_cast<const T*>(E + (4 + c) * g.TW),
                         static_cast<const T*>(E + (8 + c) * g.TW), static_cast<const T*>(E + (12 + c) * g.TW),
                         out + c * vs, out + (4 + c) * vs, out + (8 + c) * vs, out + (12 + c) * vs, g.TW);
  }
}

#if defined(__AVX512F__)
// float: 16 tiles at a time, rows read in place, the whole transform in
// registers. Consecutive tile rows overlap by two image rows (stride 2), so
// each row's (d B) is computed once and kept for the next tile row: per 16
// tiles 2 rows of 4 loads and 4 permutes instead of 4. The load masks are
// shared by all rows; a row past the image's edge loads with mask 0 (zeros,
// no memory access).
inline void winograd_input_tiles(const WinogradGeom& g, const float* xc, index_t xs, index_t ub, index_t ue, float* V,
                                 index_t vs, float*) {
  for (index_t j0 = 0; j0 < g.TW; j0 += 16) {
    const index_t s = 2 * j0 - g.pl;
    const __mmask16 m[4] = {clip_mask(g.W, s), clip_mask(g.W, s + 16), clip_mask(g.W, s + 2), clip_mask(g.W, s + 18)};
    const __mmask16 sm = first_lanes(g.TW - j0);
    const auto row_dB = [&](index_t n, index_t ih, __m512(&e)[4]) {  // image row ih of image n
      const bool live = ih >= 0 && ih < g.H;
      winograd_row_dB16(reinterpret_cast<const char*>(xc + n * xs + (live ? ih : 0) * g.W), s, m,
                        live ? __mmask16{0xFFFF} : __mmask16{0}, e);
    };
    __m512 e0[4], e1[4], e2[4], e3[4];  // (d B) of the tile row's 4 image rows
    for (index_t u = ub; u < ue; ++u) {
      const index_t n = u / g.TH, i = u % g.TH, ih = 2 * i - g.pt;
      if (u > ub && i > 0) {  // rows 2i, 2i + 1 were the last tile row's rows 2, 3
        for (int c = 0; c < 4; ++c) {
          e0[c] = e2[c];
          e1[c] = e3[c];
        }
      } else {
        row_dB(n, ih, e0);
        row_dB(n, ih + 1, e1);
      }
      row_dB(n, ih + 2, e2);
      row_dB(n, ih + 3, e3);
      float* out = V + (u - ub) * g.TW + j0;
      for (int c = 0; c < 4; ++c) {  // B^T (d B), column c
        _mm512_mask_storeu_ps(out + c * vs, sm, _mm512_sub_ps(e0[c], e2[c]));
        _mm512_mask_storeu_ps(out + (4 + c) * vs, sm, _mm512_add_ps(e1[c], e2[c]));
        _mm512_mask_storeu_ps(out + (8 + c) * vs, sm, _mm512_sub_ps(e2[c], e1[c]));
        _mm512_mask_storeu_ps(out + (12 + c) * vs, sm, _mm512_sub_ps(e1[c], e3[c]));
      }
    }
  }
}
#endif

// A row stride of at least n values, whole kNR panels and an odd number of
// 64-byte lines: rows read one after another (a GEMM's B panel) then fall in
// different L1 sets, where a power-of-two stride would keep only 8 of them.
template <class T>
index_t winograd_row_stride(index_t n) {
  constexpr index_t NR = kNR<T>;
  const index_t s = (n + NR - 1) / NR * NR;
  return (s / NR) % 2 ? s : s + NR;
}

// Tile rows [u0, u1) (row u = image u / TH, tile row u % TH) of y = conv(x) + b.
template <class T>
void winograd_rows(const WinogradGeom& g, const T* x, const T* Up, const T* b, T* y, index_t u0, index_t u1) {
  constexpr index_t NR = kNR<T>;
  if (u1 <= u0) return;
  // Tile rows per block: V (16 x Ci x tiles) and M (16 x Co x tiles) in
  // winograd_fwd_bytes; for wide layers kWinogradWidePanels panels instead.
  const index_t budget = static_cast<index_t>(tuning().winograd_fwd_bytes / sizeof(T)) / (16 * (g.Ci + g.Co));
  const index_t rows_per_block =
      std::max<index_t>(1, (budget < 2 * NR ? kWinogradWidePanels * NR : budget) / g.TW);
  const index_t tb = (rows_per_block * g.TW + NR - 1) / NR * NR;  // tiles per block, whole panels
  const index_t ldm = tb + NR;  // off a power of two: the kMR stored rows use different L1 sets
  const index_t ldv = winograd_row_stride<T>(tb);
  const index_t asz = winograd_plane_stride<T>(packed_a_size(g.Co, g.Ci));
  const index_t vps = winograd_plane_stride<T>(g.Ci * ldv), mps = winograd_plane_stride<T>(g.Co * ldm);
  // V[xi][ci][t] plain, read by the GEMM as B (Ci x tiles) in place: each
  // panel of NR tiles is NR contiguous values per channel. Tiles past the
  // block's are read too and their columns dropped.
  T* V = scratch<T>(kWinoV, static_cast<std::size_t>(16 * vps));
  T* M = scratch<T>(kWinoM, static_cast<std::size_t>(16 * mps));
  T* work = scratch<T>(kWinoD, static_cast<std::size_t>(4 * tb + 18 * g.TW + 64));
  T* O = work;  // 4 x tb: the 2x2 outputs of each tile
  T* line = work + 4 * tb + 16 * g.TW;
  std::fill(line, line + 2 * g.TW + 64, T{});  // only [pl, pl + W) is ever rewritten

  for (index_t ub = u0; ub < u1; ub += rows_per_block) {
    const index_t ue = std::min(u1, ub + rows_per_block), nt = (ue - ub) * g.TW;
    for (index_t ci = 0; ci < g.Ci; ++ci)
      winograd_input_tiles(g, x + ci * g.H * g.W, g.Ci * g.H * g.W, ub, ue, V + ci * ldv, vps, work + 4 * tb);
    for (int xi = 0; xi < 16; ++xi)
      packed_gemm_b_rows(g.Co, nt, g.Ci, Up + xi * asz, static_cast<const T*>(V + xi * vps), ldv,
                         M + xi * mps, ldm);
    // Y = A^T m A per tile, A^T = [1 1 1 0; 0 1 -1 -1], then into y (+ bias).
    for (index_t co = 0; co < g.Co; ++co) {
      winograd_out_tiles(static_cast<const T*>(M + co * ldm), mps, nt, O, tb);
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

// y = conv3x3(x, filter) + b, stride 1: filter's row co, depth ci is the
// filter from input channel ci to output channel co.
template <class T>
void winograd_conv(const WinogradGeom& g, const T* x, const Filter3x3<T>& filter, const T* b, T* y) {
  const double flops = 2.0 * 16 * static_cast<double>(g.N * g.TH * g.TW) * static_cast<double>(g.Ci * g.Co);
  // Each thread transforms all the filters into its own scratch: shared,
  // half of them had to cross to the other core's cache on every call.
  parallel(threads_for(flops, tuning().min_flops_per_thread), [&](int tid, int parts) {
    const auto [u0, u1] = split_range(g.N * g.TH, parts, tid);
    if (u1 <= u0) return;
    T* Up = scratch<T>(kWinoU, static_cast<std::size_t>(16 * winograd_plane_stride<T>(packed_a_size(g.Co, g.Ci))));
    winograd_weights(g.Co, g.Ci, filter, Up);
    winograd_rows(g, x, static_cast<const T*>(Up), b, y, u0, u1);
  });
}

// ---- weight gradient --------------------------------------------------------
// The forward is bilinear in U = G g G^T and V = B^T d B: with
// M = U .* V and Y = A^T M A, dL/dM = A dY A^T, so per filter
//   dW[co][ci] = G^T [ sum_tiles (A dY A^T)[co] .* (B^T d B)[ci] ] G,
// again 16 GEMMs, now over the tiles (the depth):
//   Mw[xi] (Co x Ci) += Z[xi] (Co x tiles) * V[xi]^T (tiles x Ci).
// V is the forward's input transform of the same tiles; Z transforms the
// 2x2 blocks of dY (zero past the output's edge).

// Tile rows [u0, u1) of the weight gradient, accumulated into Mw (16 planes
// of Co x Ci, ps = winograd_plane_stride apart: the transformed domain; the
// caller zeroes it and applies G^T . G).
template <class T>
void winograd_dw_rows(const WinogradGeom& g, const T* x, const T* dy, T* Mw, index_t ps, index_t u0, index_t u1) {
  if (u1 <= u0) return;
  // Tile rows per block: the plain transforms (16 x (Ci + Co) x tiles) in
  // winograd_dw_bytes, their packed copies as much again; at least
  // kWinogradDwMinTiles tiles (the GEMM depth) for wide layers.
  const index_t budget = static_cast<index_t>(tuning().winograd_dw_bytes / sizeof(T)) / (16 * (g.Ci + g.Co));
  const index_t rows_per_block = std::max<index_t>(1, std::max<index_t>(budget, kWinogradDwMinTiles) / g.TW);
  const index_t tb = (rows_per_block * g.TW + 15) / 16 * 16;  // room for the zero tail below
  const index_t ld = winograd_row_stride<T>(tb);
  const index_t asz = packed_a_size(g.Co, tb), bsz = packed_b_size<T>(tb, g.Ci);
  const index_t vps = winograd_plane_stride<T>(g.Ci * ld), zps = winograd_plane_stride<T>(g.Co * ld);
  T* V = scratch<T>(kWinoV, static_cast<std::size_t>(16 * (vps + zps)));
  T* Z = V + 16 * vps;
  T* Zp = scratch<T>(kWinoM, static_cast<std::size_t>(16 * (asz + bsz)));
  T* Vp = Zp + 16 * asz;
  T* work = scratch<T>(kWinoD, static_cast<std::size_t>(22 * g.TW + 64));
  T* line = work + 16 * g.TW;
  T* lines = line + 2 * g.TW + 64;
  std::fill(line, line + 2 * g.TW + 64, T{});
  std::fill(lines, lines + 4 * g.TW, T{});  // past column OW: zero for good
  index_t zeroed = tb;  // V and Z are zero in [zeroed, tb) of every row

  for (index_t ub = u0; ub < u1; ub += rows_per_block) {
    const index_t ue = std::min(u1, ub + rows_per_block), nt = (ue - ub) * g.TW;
    // Depth padded with zero tiles to whole register-block transposes.
    const index_t ntp = (nt + 15) / 16 * 16;
    if (nt < zeroed) {
      for (int xi = 0; xi < 16; ++xi) {
        for (index_t r = 0; r < g.Ci; ++r) std::fill(V + xi * vps + r * ld + nt, V + xi * vps + r * ld + ntp, T{});
        for (index_t r = 0; r < g.Co; ++r) std::fill(Z + xi * zps + r * ld + nt, Z + xi * zps + r * ld + ntp, T{});
      }
      zeroed = nt;
    }
    for (index_t ci = 0; ci < g.Ci; ++ci)  // V[xi][ci][t], B^T d B
      winograd_input_tiles(g, x + ci * g.H * g.W, g.Ci * g.H * g.W, ub, ue, V + ci * ld, vps, work);
    for (index_t co = 0; co < g.Co; ++co)  // Z[xi][co][t], A dY A^T
      for (index_t u = ub; u < ue; ++u) {
        const index_t n = u / g.TH, i = u % g.TH;
        const T* r0 = dy + ((n * g.Co + co) * g.OH + 2 * i) * g.OW;
        winograd_row_pair_dA(r0, 2 * i + 1 < g.OH ? r0 + g.OW : nullptr, g.OW, lines, g.TW,
                             Z + co * ld + (u - ub) * g.TW, zps);
      }
    for (int xi = 0; xi < 16; ++xi) {
      pack_a(g.Co, ntp, Z + xi * zps, ld, false, Zp + xi * asz);
      pack_bt(ntp, g.Ci, V + xi * vps, ld, Vp + xi * bsz);
      packed_gemm(g.Co, g.Ci, ntp, Zp + xi * asz, Vp + xi * bsz, Mw + xi * ps, g.Ci, true);
    }
  }
}

// dw[co][ci] += G^T Mw[.][co][ci] G for pairs [p0, p1) (p = co * Ci + ci;
// planes ps apart),
//   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].
template <class T>
void winograd_dw_out(const T* Mw, index_t ps, T* dw, index_t p0, index_t p1) {
  for (index_t p = p0; p < p1; ++p) {
    T h[4][3];  // Mw G
    for (int a = 0; a < 4; ++a) {
      const T m0 = Mw[(4 * a) * ps + p], m1 = Mw[(4 * a + 1) * ps + p], m2 = Mw[(4 * a + 2) * ps + p],
              m3 = Mw[(4 * a + 3) * ps + p];
      h[a][0] = m0 + (m1 + m2) * T(0.5);
      h[a][1] = (m1 - m2) * T(0.5);
      h[a][2] = (m1 + m2) * T(0.5) + m3;
    }
    T* out = dw + p * 9;
    for (int l = 0; l < 3; ++l) {  // G^T (Mw G)
      out[l] += h[0][l] + (h[1][l] + h[2][l]) * T(0.5);
      out[3 + l] += (h[1][l] - h[2][l]) * T(0.5);
      out[6 + l] += (h[1][l] + h[2][l]) * T(0.5) + h[3][l];
    }
  }
}

// dw += the weight gradient of y = conv3x3(x, w) (geometry g, dy as y),
// dw laid out as w: [Co][Ci][3][3]. Each thread sums its tile rows into its
// own Mw; the partials are added in thread order (deterministic for a given
// thread count).
template <class T>
void winograd_conv_weight_grad(const WinogradGeom& g, const T* x, const T* dy, T* dw) {
  const index_t pairs = g.Co * g.Ci, ps = winograd_plane_stride<T>(pairs), msz = 16 * ps;
  const double flops = 2.0 * 16 * static_cast<double>(g.N * g.TH * g.TW) * static_cast<double>(pairs);
  const int want = std::min<int>(threads_for(flops, tuning().min_flops_per_thread),
                                 static_cast<int>(std::max<index_t>(1, g.N * g.TH)));
  T* Mw = scratch<T>(kWinoW, static_cast<std::size_t>(want * msz));
  int used = 1;
  parallel(want, [&](int tid, int parts) {
    if (tid == 0) used = parts;
    T* m = Mw + tid * msz;
    std::fill(m, m + msz, T{});
    const auto [u0, u1] = split_range(g.N * g.TH, parts, tid);
    winograd_dw_rows(g, x, dy, m, ps, u0, u1);
  });
  // Each thread adds up the partials (in thread order) of its own pairs, then transforms them.
  parallel(threads_for(kWinogradDwOutWork * static_cast<double>(pairs), tuning().min_touches_per_thread),
           [&](int tid, int parts) {
    const auto [p0, p1] = split_range(pairs, parts, tid);
    if (p1 <= p0) return;
    for (int t = 1; t < used; ++t)
      for (int xi = 0; xi < 16; ++xi)
        ArrMap<T>(Mw + xi * ps + p0, p1 - p0) += CArrMap<T>(Mw + t * msz + xi * ps + p0, p1 - p0);
    winograd_dw_out(static_cast<const T*>(Mw), ps, dw, p0, p1);
  });
}

#endif  // DDPM_CPU_PACKED_KERNEL

}  // namespace ddpm::backend::cpu_detail
