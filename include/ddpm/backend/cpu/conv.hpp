#pragma once
// Conv2d for backend::Cpu as GEMM.
//
// Per image n, with K = Ci*KH*KW rows of patches and P = OH*OW output pixels:
//   forward   Y_n[Co, P]  = W[Co, K] * col_n[K, P] (+ b)
//   backward  dW[Co, K]  += dY_n[Co, P] * col_n[K, P]^T
//             dcol[K, P]  = W^T * dY_n,  dx_n = col2im(dcol)
//
// Four paths, all checked against backend::Reference, chosen by the shape and
// the switches of Tuning (tuning.hpp):
//   - AVX2+FMA builds, 3x3 stride 1 with enough channels and tiles: Winograd
//     F(2x2, 3x3) (eigen/winograd.hpp), forward, input and weight gradients.
//   - AVX2+FMA builds, stride 1 ("wide", the 3x3 hot path): no im2col at all.
//     The image is zero-padded once; then every row of col is a contiguous
//     slice of the padded image (WideGeom), packed straight into the panels of
//     the register-blocked kernel in kernel.hpp. W (and W^T) is packed once
//     per call by each thread, into its own scratch.
//   - AVX2+FMA builds, other strides and 1x1: im2col tiles (1x1 stride 1 reads
//     x directly) repacked for the same kernel.
//   - any build: im2col tiles sized for L2 and Eigen's GEMM.
//
// Threads: whole images are spread over the threads (each thread's weight
// gradient goes to a private partial, summed in thread order at the end); the
// N % threads images left over are split inside the image, by output pixels
// (forward) or by input channels (backward), so no two threads ever write
// the same element.
#include <algorithm>
#include <cstring>

#include "ddpm/backend/cpu/common.hpp"
#include "ddpm/backend/cpu/kernel.hpp"
#include "ddpm/backend/cpu/winograd.hpp"

namespace ddpm::backend::cpu_detail {

// im2col tiles are at least kMinTilePixels wide (shorter ones leave the GEMM
// mostly edge work), in steps of kTilePixelStep (whole vectors).
inline constexpr index_t kMinTilePixels = 64;
inline constexpr index_t kTilePixelStep = 16;
// When an image is split over threads by output pixels, each part is a
// multiple of this many pixels (whole vectors per row of the output).
inline constexpr index_t kPixelSplitGrain = 16;

struct ConvGeom {
  index_t N, Ci, H, W, Co, KH, KW, OH, OW, HW, P, KK, K;
  index_t s, pt, pl, pb, pr;
  bool pointwise;

  template <class T>
  ConvGeom(ConstTensorView<T> x, ConstTensorView<T> w, const Conv2dParams& p)
      : N(x.dim(0)), Ci(x.dim(1)), H(x.dim(2)), W(x.dim(3)), Co(w.dim(0)), KH(w.dim(2)), KW(w.dim(3)),
        OH(p.out_h(H, KH)), OW(p.out_w(W, KW)), HW(H * W), P(OH * OW), KK(KH * KW), K(Ci * KH * KW), s(p.stride),
        pt(p.pad_top), pl(p.pad_left), pb(p.pad_bottom), pr(p.pad_right),
        pointwise(KH == 1 && KW == 1 && p.stride == 1 && p.pad_top == 0 && p.pad_bottom == 0 && p.pad_left == 0 &&
                  p.pad_right == 0) {}

  // Pixels per tile so that `rows` rows of col take about `bytes`.
  index_t tile(index_t rows, std::size_t elem, std::size_t bytes = tuning().im2col_tile_bytes) const {
    const index_t t = static_cast<index_t>(bytes / (elem * static_cast<std::size_t>(std::max<index_t>(rows, 1))));
    const index_t tw = std::max<index_t>(kMinTilePixels, t / kTilePixelStep * kTilePixelStep);
    return std::min(tw, P);
  }

  // Output columns ow whose tap kw lands inside the image: [lo, hi).
  void valid_ow(index_t kw, index_t& lo, index_t& hi) const {
    const index_t a = pl - kw;  // ow*s >= a
    lo = a <= 0 ? 0 : (a + s - 1) / s;
    const index_t b = W - 1 + pl - kw;  // ow*s <= b
    hi = b < 0 ? 0 : b / s + 1;
    lo = std::min(lo, OW);
    hi = std::clamp(hi, lo, OW);
  }
};

// col[(c-c0)*KK + kh*KW + kw, p - p0] = x_n[c, ih, iw] (0 outside) for c in
// [c0, c1), p in [p0, p1).
template <class T>
void im2col(const ConvGeom& g, const T* x, index_t c0, index_t c1, index_t p0, index_t p1, T* col) {
  const index_t ld = p1 - p0;
  const index_t oh_first = p0 / g.OW, oh_last = (p1 - 1) / g.OW;
  for (index_t kw = 0; kw < g.KW; ++kw) {
    index_t lo, hi;
    g.valid_ow(kw, lo, hi);
    const index_t xoff = kw - g.pl;
    for (index_t c = c0; c < c1; ++c) {
      const T* xc = x + c * g.HW;
      for (index_t kh = 0; kh < g.KH; ++kh) {
        T* row = col + ((c - c0) * g.KK + kh * g.KW + kw) * ld;
        for (index_t oh = oh_first; oh <= oh_last; ++oh) {
          const index_t pbase = oh * g.OW, base = pbase - p0;  // row[base + ow] is pixel (oh, ow)
          const index_t a = std::max(-base, index_t{0}), b = std::min(p1 - pbase, g.OW);
          const index_t ih = oh * g.s - g.pt + kh;
          if (ih < 0 || ih >= g.H) {
            std::fill(row + (base + a), row + (base + b), T{});
            continue;
          }
          const index_t l = std::clamp(lo, a, b), h = std::clamp(hi, l, b);
          std::fill(row + (base + a), row + (base + l), T{});
          const T* src = xc + ih * g.W;  // src[ow * s + xoff], inside the row for ow in [l, h)
          if (g.s == 1) {
            if (h > l) std::memcpy(row + (base + l), src + (l + xoff), static_cast<std::size_t>(h - l) * sizeof(T));
          } else {
            for (index_t ow = l; ow < h; ++ow) row[base + ow] = src[ow * g.s + xoff];
          }
          std::fill(row + (base + h), row + (base + b), T{});
        }
      }
    }
  }
}

// dx_n[c, ih, iw] += col[...] : the adjoint of im2col (same index map).
template <class T>
void col2im_add(const ConvGeom& g, const T* col, index_t c0, index_t c1, index_t p0, index_t p1, T* dx) {
  const index_t ld = p1 - p0;
  const index_t oh_first = p0 / g.OW, oh_last = (p1 - 1) / g.OW;
  for (index_t c = c0; c < c1; ++c) {
    T* dc = dx + c * g.HW;
    for (index_t kh = 0; kh < g.KH; ++kh) {
      for (index_t kw = 0; kw < g.KW; ++kw) {
        index_t lo, hi;
        g.valid_ow(kw, lo, hi);
        const index_t xoff = kw - g.pl;
        const T* row = col + ((c - c0) * g.KK + kh * g.KW + kw) * ld;
        for (index_t oh = oh_first; oh <= oh_last; ++oh) {
          const index_t ih = oh * g.s - g.pt + kh;
          if (ih < 0 || ih >= g.H) continue;
          const index_t pbase = oh * g.OW, base = pbase - p0;
          const index_t a = std::max(-base, index_t{0}), b = std::min(p1 - pbase, g.OW);
          const index_t l = std::clamp(lo, a, b), h = std::clamp(hi, l, b);
          T* dst = dc + ih * g.W;
          if (g.s == 1) {
            for (index_t ow = l; ow < h; ++ow) dst[ow + xoff] += row[base + ow];
          } else {
            for (index_t ow = l; ow < h; ++ow) dst[ow * g.s + xoff] += row[base + ow];
          }
        }
      }
    }
  }
}

// ---- Eigen-GEMM path (any build) ------------------------------------------------

// Output pixels [p0, p1) of one image.
template <class T>
void conv_fwd_pixels(const ConvGeom& g, const T* x, const T* w, const T* b, T* y, index_t p0, index_t p1) {
  if (p1 <= p0) return;
  auto set_bias = [&](index_t t0, index_t t1) {
    if (b)
      for (index_t co = 0; co < g.Co; ++co) std::fill(y + co * g.P + t0, y + co * g.P + t1, b[co]);
  };
  const T beta = b ? T{1} : T{0};
  if (g.pointwise) {
    set_bias(p0, p1);
    gemm_serial(Trans::No, Trans::No, g.Co, p1 - p0, g.Ci, T{1}, w, g.K, x + p0, g.P, beta, y + p0, g.P);
    return;
  }
  const index_t tile = std::min(g.tile(g.K, sizeof(T)), p1 - p0);
  T* col = scratch<T>(kCol, static_cast<std::size_t>(g.K * tile));
  for (index_t t0 = p0; t0 < p1; t0 += tile) {
    const index_t t1 = std::min(p1, t0 + tile);
    im2col(g, x, 0, g.Ci, t0, t1, col);
    set_bias(t0, t1);
    gemm_serial(Trans::No, Trans::No, g.Co, t1 - t0, g.K, T{1}, w, g.K, col, t1 - t0, beta, y + t0, g.P);
  }
}

// Input channels [c0, c1) of one image: dx_n for those channels (overwritten)
// and dw[:, c0*KK .. c1*KK) += (dw has leading dim K). Either may be null.
template <class T>
void conv_bwd_channels(const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx, T* dw, index_t c0,
                       index_t c1) {
  if (c1 <= c0 || (!dx && !dw)) return;
  const index_t kc = (c1 - c0) * g.KK;
  if (g.pointwise) {
    if (dw) gemm_serial(Trans::No, Trans::Yes, g.Co, kc, g.P, T{1}, dy, g.P, x + c0 * g.P, g.P, T{1}, dw + c0, g.K);
    if (dx) gemm_serial(Trans::Yes, Trans::No, kc, g.P, g.Co, T{1}, w + c0, g.K, dy, g.P, T{0}, dx + c0 * g.P, g.P);
    return;
  }
  if (dx) std::fill(dx + c0 * g.HW, dx + c1 * g.HW, T{});
  const index_t tile = g.tile(kc, sizeof(T));
  T* col = scratch<T>(kCol, static_cast<std::size_t>(kc * tile));
  for (index_t t0 = 0; t0 < g.P; t0 += tile) {
    const index_t t1 = std::min(g.P, t0 + tile), tw = t1 - t0;
    if (dw) {
      im2col(g, x, c0, c1, t0, t1, col);
      gemm_serial(Trans::No, Trans::Yes, g.Co, kc, tw, T{1}, dy + t0, g.P, col, tw, T{1}, dw + c0 * g.KK, g.K);
    }
    if (dx) {
      gemm_serial(Trans::Yes, Trans::No, kc, tw, g.Co, T{1}, w + c0 * g.KK, g.K, dy + t0, g.P, T{0}, col, tw);
      col2im_add(g, col, c0, c1, t0, t1, dx);
    }
  }
}

// ---- packed-kernel path (AVX2 + FMA builds) -----------------------------------------
// Taken when tuning().use_packed_kernel; stride 1 then skips im2col (see
// WideGeom) when tuning().use_wide.

#if DDPM_CPU_PACKED_KERNEL
// Pixel tile for the packed path: a multiple of the panel width.
template <class T>
index_t packed_tile(const ConvGeom& g, index_t rows, index_t limit) {
  const index_t t = std::max(g.tile(rows, sizeof(T)) / kNR<T>, index_t{1}) * kNR<T>;
  return std::min(t, limit);
}

// Output pixels [p0, p1) of one image; Ap = W packed (pack_a over Co x K).
template <class T>
void conv_fwd_pixels_packed(const ConvGeom& g, const T* x, const T* Ap, const T* b, T* y, index_t p0, index_t p1) {
  if (p1 <= p0) return;
  const index_t tile = packed_tile<T>(g, g.K, p1 - p0);
  T* col = g.pointwise ? nullptr : scratch<T>(kCol, static_cast<std::size_t>(g.K * tile));
  T* Bp = scratch<T>(kPackB, static_cast<std::size_t>(packed_b_size<T>(g.K, tile)));
  for (index_t t0 = p0; t0 < p1; t0 += tile) {
    const index_t t1 = std::min(p1, t0 + tile), tw = t1 - t0;
    if (b)
      for (index_t co = 0; co < g.Co; ++co) std::fill(y + co * g.P + t0, y + co * g.P + t1, b[co]);
    if (g.pointwise) {
      // x's rows (each channel's pixels, contiguous) read in place in whole
      // runs of kPanels kNR pixels; only the rest is packed.
      const index_t whole = tw / (kPanels * kNR<T>) * (kPanels * kNR<T>);
      packed_gemm_b_rows(g.Co, whole, g.K, Ap, x + t0, g.P, y + t0, g.P, b != nullptr);
      if (whole == tw) continue;
      pack_b(g.K, tw - whole, x + t0 + whole, g.P, Bp);
      packed_gemm(g.Co, tw - whole, g.K, Ap, Bp, y + t0 + whole, g.P, b != nullptr);
      continue;
    }
    im2col(g, x, 0, g.Ci, t0, t1, col);
    pack_b(g.K, tw, col, tw, Bp);
    packed_gemm(g.Co, tw, g.K, Ap, Bp, y + t0, g.P, b != nullptr);
  }
}

// Stride 1, any kernel and padding, without im2col: with the image zero-padded
// into xp[Ci, Hp, Wp], output pixel (oh, ow) at "wide" index q = oh*Wp + ow
// reads xp[c, q + kh*Wp + kw], so each row of a B panel is one contiguous
// slice of xp. The Wp - OW columns per row that are not outputs are computed
// and dropped: (Wp - OW) / Wp of the work, 2/16 at 14x14 with pad 1, less on
// larger images.
struct WideGeom {
  index_t Hp, Wp, HWp;
  explicit WideGeom(const ConvGeom& g) : Hp(g.H + g.pt + g.pb), Wp(g.W + g.pl + g.pr), HWp(Hp * Wp) {}
  index_t wide(const ConvGeom& g, index_t p) const { return (p / g.OW) * Wp + p % g.OW; }
};

// x_n -> xp (zero borders), with kNR elements of zero slack after the last plane.
template <class T>
T* pad_image(const ConvGeom& g, const WideGeom& wg, const T* x, index_t c0, index_t c1, Slot slot) {
  const index_t n = (c1 - c0) * wg.HWp + 2 * kNR<T>;
  T* xp = scratch<T>(slot, static_cast<std::size_t>(n));
  std::fill(xp, xp + n, T{});
  for (index_t c = c0; c < c1; ++c)
    for (index_t i = 0; i < g.H; ++i)
      std::copy(x + c * g.HW + i * g.W, x + c * g.HW + (i + 1) * g.W, xp + (c - c0) * wg.HWp + (i + g.pt) * wg.Wp + g.pl);
  return xp;
}

// Output pixels [p0, p1) of one image, stride 1 (see WideGeom).
template <class T>
void conv_fwd_wide(const ConvGeom& g, const T* x, const T* Ap, const T* b, T* y, index_t p0, index_t p1) {
  if (p1 <= p0) return;
  constexpr index_t NR = kNR<T>;
  const WideGeom wg(g);
  const T* xp = pad_image(g, wg, x, 0, g.Ci, kCol);
  const index_t q0 = wg.wide(g, p0), q1 = wg.wide(g, p1 - 1) + 1;
  // Tile the wide columns so that the output tile stays in L2.
  const index_t cols =
      static_cast<index_t>(tuning().wide_fwd_tile_bytes / sizeof(T)) / std::max<index_t>(g.Co, 1);
  const index_t tile = std::min(q1 - q0, std::max<index_t>(NR, cols / NR * NR));
  // Rows of the output tile one panel apart from a power of two: the kMR rows
  // a micro-kernel stores then fall into different L1 sets (a power-of-two
  // stride puts them in one or two sets, which then evict each other).
  const index_t ldy = tile + NR;
  T* Yw = scratch<T>(kPackA2, static_cast<std::size_t>(g.Co * ldy));
  index_t* off = scratch<index_t>(kCol, static_cast<std::size_t>(g.K));  // row k of col -> offset in xp
  for (index_t c = 0, k = 0; c < g.Ci; ++c)
    for (index_t kh = 0; kh < g.KH; ++kh)
      for (index_t kw = 0; kw < g.KW; ++kw) off[k++] = c * wg.HWp + kh * wg.Wp + kw;
  for (index_t t0 = q0; t0 < q1; t0 += tile) {
    const index_t tw = std::min(tile, q1 - t0);
    auto pack = [&](index_t j0, index_t, index_t k0, index_t kc, T* dst) {
      const T* base = xp + t0 + j0;
      for (index_t k = k0; k < k0 + kc; ++k, dst += NR) std::copy(base + off[k], base + off[k] + NR, dst);
    };
    packed_gemm_lazy(g.Co, tw, g.K, Ap, pack, Yw, ldy, false);
    // Keep the columns that are output pixels (ow < OW), adding the bias.
    for (index_t q = t0; q < t0 + tw;) {
      const index_t oh = q / wg.Wp, ow = q % wg.Wp;
      const index_t end = std::min(t0 + tw, (oh + 1) * wg.Wp);  // end of this wide row in the tile
      const index_t len = std::min(end - q, std::max<index_t>(g.OW - ow, 0));
      if (len > 0) {
        const index_t pp = oh * g.OW + ow;
        for (index_t co = 0; co < g.Co; ++co) {
          const T* src = Yw + co * ldy + (q - t0);
          T* dst = y + co * g.P + pp;
          const T bias = b ? b[co] : T{};
          for (index_t i = 0; i < len; ++i) dst[i] = src[i] + bias;
        }
      }
      q = end;
    }
  }
}

// Backward, stride 1 (see WideGeom), input channels [c0, c1) of one image;
// c0 * KK is a multiple of kMR unless c0 == 0. Awt = W^T packed (K x Co).
template <class T>
void conv_bwd_wide(const ConvGeom& g, const T* x, const T* Awt, const T* dy, T* dx, T* dw, index_t c0, index_t c1) {
  if (c1 <= c0 || (!dx && !dw)) return;
  const WideGeom wg(g);
  const index_t nc = c1 - c0, kc = nc * g.KK;
  const index_t Pw = wg.wide(g, g.P - 1) + 1;  // wide columns in use
  // dY in the wide layout, zero in the columns that are not outputs.
  T* dyw = scratch<T>(kWideDy, static_cast<std::size_t>(g.Co * Pw));
  for (index_t co = 0; co < g.Co; ++co)
    for (index_t oh = 0; oh < g.OH; ++oh) {
      T* dst = dyw + co * Pw + oh * wg.Wp;
      std::copy(dy + co * g.P + oh * g.OW, dy + co * g.P + (oh + 1) * g.OW, dst);
      if (oh + 1 < g.OH) std::fill(dst + g.OW, dst + wg.Wp, T{});
    }
  const T* xp = dw ? pad_image(g, wg, x, c0, c1, kCol) : nullptr;
  T* dxp = nullptr;
  if (dx) {
    const index_t n = nc * wg.HWp;
    dxp = scratch<T>(kWideDx, static_cast<std::size_t>(n));
    std::fill(dxp, dxp + n, T{});
  }
  constexpr index_t NR = kNR<T>;
  const index_t KC = depth_block<T>(g.Co);
  const T* Aw = Awt + c0 * g.KK * g.Co;  // rows c0*KK.. of W^T: whole kMR blocks
  if (dw) {
    // dw[:, rows] += dYw[:, tile] * col_wide[rows, tile]^T, the tile (depth) sized
    // so that packed dY stays in L2.
    const index_t depth = static_cast<index_t>(tuning().wide_dw_tile_bytes) / static_cast<index_t>(sizeof(T)) /
                          std::max<index_t>(g.Co, 1);
    const index_t tile = std::min(Pw, std::max<index_t>(NR, depth / NR * NR));
    T* Ady = scratch<T>(kPackA2, static_cast<std::size_t>(packed_a_size(g.Co, tile)));
    for (index_t t0 = 0; t0 < Pw; t0 += tile) {
      const index_t tw = std::min(tile, Pw - t0);
      pack_a(g.Co, tw, dyw + t0, Pw, false, Ady);
      auto pack = [&](index_t j0, index_t nr, index_t k0, index_t kcb, T* dst) {
        const T* src[NR];
        for (index_t jj = 0; jj < NR; ++jj) {
          const index_t k = j0 + std::min(jj, nr - 1), c = k / g.KK, r = k % g.KK;  // columns past nr: repeat
          src[jj] = xp + c * wg.HWp + (r / g.KW) * wg.Wp + r % g.KW + t0 + k0;
        }
        constexpr index_t L = 32 / static_cast<index_t>(sizeof(T));
        index_t q = 0;
        for (; q + L <= kcb; q += L)
          for (index_t g0 = 0; g0 < NR; g0 += L) simd::transpose_block(src + g0, q, dst + q * NR + g0, NR);
        for (; q < kcb; ++q)
          for (index_t jj = 0; jj < NR; ++jj) dst[q * NR + jj] = src[jj][q];
      };
      packed_gemm_lazy(g.Co, kc, tw, Ady, pack, dw + c0 * g.KK, g.K, true);
    }
  }
  if (dx) {
    // dcol[rows, panel] = W[:, rows]^T dYw[:, panel], one panel of wide columns
    // at a time, added into dxp while it is hot.
    T* dpanel = scratch<T>(kPartial2, static_cast<std::size_t>(packed_a_size(kc, 1) * NR));
    alignas(64) T panel[kKC<T> * NR];
    for (index_t j0 = 0; j0 < Pw; j0 += NR) {
      const index_t nr = std::min(NR, Pw - j0);
      for (index_t k0 = 0; k0 < g.Co; k0 += KC) {
        const index_t kcb = std::min(KC, g.Co - k0);
        for (index_t co = k0; co < k0 + kcb; ++co) {
          T* dst = panel + (co - k0) * NR;
          std::copy(dyw + co * Pw + j0, dyw + co * Pw + j0 + nr, dst);
          std::fill(dst + nr, dst + NR, T{});
        }
        for (index_t i0 = 0; i0 < kc; i0 += kMR)
          micro_kernel(kcb, Aw + i0 * g.Co + k0 * kMR, panel, dpanel + i0 * NR, NR, k0 > 0, std::min(kMR, kc - i0),
                       NR);
      }
      // Channel innermost: consecutive adds hit different planes, so an add never
      // waits on the overlapping store of the neighbouring tap (store forwarding).
      for (index_t kw = 0; kw < g.KW; ++kw)
        for (index_t kh = 0; kh < g.KH; ++kh)
          for (index_t c = 0; c < nc; ++c) {
            T* dst = dxp + c * wg.HWp + kh * wg.Wp + kw + j0;
            const T* src = dpanel + (c * g.KK + kh * g.KW + kw) * NR;
            for (index_t q = 0; q < nr; ++q) dst[q] += src[q];
          }
    }
  }
  if (dx)
    for (index_t c = c0; c < c1; ++c)
      for (index_t i = 0; i < g.H; ++i) {
        const T* src = dxp + (c - c0) * wg.HWp + (i + g.pt) * wg.Wp + g.pl;
        std::copy(src, src + g.W, dx + c * g.HW + i * g.W);
      }
}

// Input channels [c0, c1) of one image (c0 * KK a multiple of kMR unless c0 == 0
// and the whole range is used); Awt = W^T packed (pack_a over K x Co).
template <class T>
void conv_bwd_channels_packed(const ConvGeom& g, const T* x, const T* Awt, const T* dy, T* dx, T* dw, index_t c0,
                              index_t c1) {
  if (c1 <= c0 || (!dx && !dw)) return;
  const index_t kc = (c1 - c0) * g.KK;
  const index_t tile = packed_tile<T>(g, std::max(kc, g.Co), g.P);
  T* col = scratch<T>(kCol, static_cast<std::size_t>(kc * tile));
  T* Bp = scratch<T>(kPackB, static_cast<std::size_t>(std::max(packed_b_size<T>(g.Co, tile), packed_b_size<T>(tile, kc))));
  T* Ady = dw ? scratch<T>(kPackA2, static_cast<std::size_t>(packed_a_size(g.Co, tile))) : nullptr;
  const T* Aw = Awt + c0 * g.KK * g.Co;  // rows c0*KK.. of W^T: whole kMR blocks
  if (dx && !g.pointwise) std::fill(dx + c0 * g.HW, dx + c1 * g.HW, T{});
  for (index_t t0 = 0; t0 < g.P; t0 += tile) {
    const index_t t1 = std::min(g.P, t0 + tile), tw = t1 - t0;
    if (dw) {
      // dw[:, rows] += dY[:, tile] * col[rows, tile]^T
      const T* cols = col;
      if (g.pointwise)
        cols = x + c0 * g.P + t0;
      else
        im2col(g, x, c0, c1, t0, t1, col);
      pack_a(g.Co, tw, dy + t0, g.P, false, Ady);
      pack_bt(tw, kc, cols, g.pointwise ? g.P : tw, Bp);
      packed_gemm(g.Co, kc, tw, Ady, Bp, dw + c0 * g.KK, g.K, true);
    }
    if (dx) {
      // dcol[rows, tile] = W[:, rows]^T * dY[:, tile], then scattered back.
      pack_b(g.Co, tw, dy + t0, g.P, Bp);
      if (g.pointwise) {
        packed_gemm(kc, tw, g.Co, Aw, Bp, dx + c0 * g.P + t0, g.P, false);
      } else {
        packed_gemm(kc, tw, g.Co, Aw, Bp, col, tw, false);
        col2im_add(g, col, c0, c1, t0, t1, dx);
      }
    }
  }
}
#endif

#if DDPM_CPU_PACKED_KERNEL
// Winograd needs enough channels and enough tiles to pay for transforming the
// filters (U is 16/9 the size of W, made by every thread) and the short tile
// rows of small images; images of at most kWinogradSmallPixels (8x8) have
// their own limits (Tuning).
inline constexpr index_t kWinogradSmallPixels = 64;
inline bool winograd_applies(const ConvGeom& g) {
  const Tuning& t = tuning();
  if (!t.use_packed_kernel || !t.use_winograd || g.KH != 3 || g.KW != 3 || g.s != 1) return false;
  const index_t tiles = g.N * ((g.OH + 1) / 2) * ((g.OW + 1) / 2);
  const bool small = g.P <= kWinogradSmallPixels;
  const index_t min_channels = small ? t.winograd_min_channels_small : t.winograd_min_channels;
  return g.Ci >= min_channels && g.Co >= min_channels &&
         tiles >= (small ? t.winograd_min_tiles_small : t.winograd_min_tiles);
}
#endif

// ---- drivers --------------------------------------------------------------------------

template <class T>
void run(ops::conv2d_forward_t, ConstTensorView<T> xv, ConstTensorView<T> wv, ConstTensorView<T> bv, Conv2dParams p,
         TensorView<T> yv) {
  const ConvGeom g(xv, wv, p);
  if (g.N == 0 || g.Co == 0 || g.P == 0) return;
  const T *x = xv.data(), *w = wv.data(), *b = bv.data();
  T* y = yv.data();
  if (g.K == 0) {
    for (index_t i = 0; i < g.N * g.Co; ++i) std::fill(y + i * g.P, y + (i + 1) * g.P, b ? b[i % g.Co] : T{});
    return;
  }
#if DDPM_CPU_PACKED_KERNEL
  if (winograd_applies(g)) {
    winograd_conv(WinogradGeom(g.N, g.Ci, g.Co, g.H, g.W, g.pt, g.pb, g.pl, g.pr), x,
                  Filter3x3<T>{w, g.Ci * 9, 9}, b, y);
    return;
  }
#endif
  const double flops = 2.0 * static_cast<double>(g.N * g.Co) * static_cast<double>(g.K * g.P);
  const int T_ = threads_for(flops, tuning().min_flops_per_thread);
  const index_t nb = g.N - g.N % T_;  // images spread whole over the threads
  // Each thread packs the filters itself, into its own scratch: packed by
  // one thread, they had to cross to the other core's cache on every call.
  [[maybe_unused]] const auto packed_filters = [&]() -> const T* {
#if DDPM_CPU_PACKED_KERNEL
    if (tuning().use_packed_kernel) {
      T* a = scratch<T>(kPackA, static_cast<std::size_t>(packed_a_size(g.Co, g.K)));
      pack_a(g.Co, g.K, w, g.K, false, a);
      return a;
    }
#endif
    return nullptr;
  };
  auto run = [&]([[maybe_unused]] const T* Ap, index_t n, index_t p0, index_t p1) {
#if DDPM_CPU_PACKED_KERNEL
    if (Ap && g.s == 1 && !g.pointwise && tuning().use_wide)
      return conv_fwd_wide(g, x + n * g.Ci * g.HW, Ap, b, y + n * g.Co * g.P, p0, p1);
    if (Ap) return conv_fwd_pixels_packed(g, x + n * g.Ci * g.HW, Ap, b, y + n * g.Co * g.P, p0, p1);
#endif
    conv_fwd_pixels(g, x + n * g.Ci * g.HW, w, b, y + n * g.Co * g.P, p0, p1);
  };
  if (nb > 0)
    parallel(T_, [&](int tid, int parts) {
      const auto [n0, n1] = split_range(nb, parts, tid);
      const T* Ap = packed_filters();
      for (index_t n = n0; n < n1; ++n) run(Ap, n, 0, g.P);
    });
  if (nb < g.N)
    parallel(T_, [&](int tid, int parts) {
      const auto [p0, p1] = split_range(g.P, parts, tid, kPixelSplitGrain);
      if (p1 <= p0) return;
      const T* Ap = packed_filters();
      for (index_t n = nb; n < g.N; ++n) run(Ap, n, p0, p1);
    });
}

template <class T>
void run(ops::conv2d_backward_t, ConstTensorView<T> xv, ConstTensorView<T> wv, ConstTensorView<T> dyv, Conv2dParams p,
         TensorView<T> dxv, TensorView<T> dwv, TensorView<T> dbv) {
  const ConvGeom g(xv, wv, p);
  const T *x = xv.data(), *w = wv.data(), *dy = dyv.data();
  T *dx = dxv.data(), *dw = dwv.data(), *db = dbv.data();
  if (db && g.P > 0)  // threads own output channels; each sums images in order (deterministic)
    parallel(threads_for(static_cast<double>(g.N * g.Co * g.P), tuning().min_touches_per_thread),
             [&](int tid, int parts) {
      const auto [c0, c1] = split_range(g.Co, parts, tid);
      for (index_t n = 0; n < g.N; ++n)
        for (index_t co = c0; co < c1; ++co) db[co] += CArrMap<T>(dy + (n * g.Co + co) * g.P, g.P).sum();
    });
#if DDPM_CPU_PACKED_KERNEL
  // The input gradient of a 3x3 stride-1 convolution with pads <= 2 is the
  // convolution of dY with the filters flipped in both axes and transposed
  // (Ci <- Co), padded by 2 - pad on each side: Winograd again.
  if (dx && g.P > 0 && winograd_applies(g) && std::max({g.pt, g.pb, g.pl, g.pr}) <= 2) {
    winograd_conv(WinogradGeom(g.N, g.Co, g.Ci, g.OH, g.OW, 2 - g.pt, 2 - g.pb, 2 - g.pl, 2 - g.pr), dy,
                  Filter3x3<T>{w, 9, g.Ci * 9, true}, static_cast<const T*>(nullptr), dx);
    dx = nullptr;
  }
  // The weight gradient in the same transformed domain (winograd.hpp).
  if (dw && g.P > 0 && winograd_applies(g)) {
    winograd_conv_weight_grad(WinogradGeom(g.N, g.Ci, g.Co, g.H, g.W, g.pt, g.pb, g.pl, g.pr), x, dy, dw);
    dw = nullptr;
  }
#endif
  if (!dx && !dw) return;
  if (g.P == 0 || g.Co == 0 || g.K == 0) {
    if (dx) std::fill(dx, dx + g.N * g.Ci * g.HW, T{});
    return;
  }
  const double flops = 2.0 * static_cast<double>(g.N * g.Co) * static_cast<double>(g.K * g.P) * ((dx && dw) ? 2 : 1);
  const int T_ = threads_for(flops, tuning().min_flops_per_thread);
  // Thread 0 accumulates into dw itself, thread t > 0 into partial t-1.
  const index_t wsz = g.Co * g.K;
  T* partial = (dw && T_ > 1) ? scratch<T>(kPartial, static_cast<std::size_t>((T_ - 1) * wsz)) : nullptr;
  int used = 1;
  auto target = [&](int tid) -> T* { return !dw ? nullptr : tid == 0 ? dw : partial + (tid - 1) * wsz; };
  const index_t nb = g.N - g.N % T_;
  index_t cgrain = 1;  // channel split granularity (packed: whole kMR blocks of W^T rows)
  // W^T packed by each thread into its own scratch (see conv2d_forward).
  [[maybe_unused]] const auto packed_filters = [&]() -> const T* {
#if DDPM_CPU_PACKED_KERNEL
    if (tuning().use_packed_kernel) {
      T* a = scratch<T>(kPackA, static_cast<std::size_t>(packed_a_size(g.K, g.Co)));
      if (dx) pack_a(g.K, g.Co, w, g.K, true, a);
      return a;
    }
#endif
    return nullptr;
  };
#if DDPM_CPU_PACKED_KERNEL
  if (tuning().use_packed_kernel) {
    index_t gcd = kMR, r = g.KK;
    while (r) {
      const index_t t = gcd % r;
      gcd = r;
      r = t;
    }
    cgrain = kMR / gcd;
  }
#endif
  auto run = [&]([[maybe_unused]] const T* Awt, index_t n, int tid, index_t c0, index_t c1) {
    const T* xn = x + n * g.Ci * g.HW;
    const T* dyn = dy + n * g.Co * g.P;
    T* dxn = dx ? dx + n * g.Ci * g.HW : nullptr;
#if DDPM_CPU_PACKED_KERNEL
    if (Awt && g.s == 1 && !g.pointwise && tuning().use_wide)
      return conv_bwd_wide(g, xn, Awt, dyn, dxn, target(tid), c0, c1);
    if (Awt) return conv_bwd_channels_packed(g, xn, Awt, dyn, dxn, target(tid), c0, c1);
#endif
    conv_bwd_channels(g, xn, w, dyn, dxn, target(tid), c0, c1);
  };
  parallel(T_, [&](int tid, int parts) {
    if (tid == 0) used = parts;
    T* dwt = target(tid);
    if (tid > 0 && dwt) std::fill(dwt, dwt + wsz, T{});
    const auto [n0, n1] = split_range(nb, parts, tid);
    if (n1 <= n0) return;
    const T* Awt = packed_filters();
    for (index_t n = n0; n < n1; ++n) run(Awt, n, tid, 0, g.Ci);
  });
  if (nb < g.N)
    parallel(T_, [&](int tid, int parts) {
      const auto [c0, c1] = split_range(g.Ci, parts, tid, cgrain);
      if (c1 <= c0) return;
      const T* Awt = packed_filters();
      for (index_t n = nb; n < g.N; ++n) run(Awt, n, tid, c0, c1);
    });
  if (dw)
    for (int t = 1; t < used; ++t) ArrMap<T>(dw, wsz) += CArrMap<T>(partial + (t - 1) * wsz, wsz);
}

}  // namespace ddpm::backend::cpu_detail
