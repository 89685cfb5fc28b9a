#pragma once
// Conv2d for backend::Eigen as GEMM over im2col tiles.
//
// Per image n, with K = Ci*KH*KW rows of patches and P = OH*OW output pixels:
//   forward   Y_n[Co, P]  = W[Co, K] * col_n[K, P] (+ b)
//   backward  dW[Co, K]  += dY_n[Co, P] * col_n[K, P]^T
//             dcol[K, P]  = W^T * dY_n,  dx_n = col2im(dcol)
// col_n is never built whole: it is produced a tile of pixels at a time into a
// per-thread buffer sized to stay in L2, and a 1x1 stride-1 unpadded kernel
// uses x itself as col (no copy).
//
// Threads: whole images are spread over the threads (each thread's weight
// gradient goes to a private partial, summed in thread order at the end); the
// N % threads images left over are split inside the image, by output pixels
// (forward) or by input channels (backward), so no two threads ever write
// the same element.
#include <algorithm>
#include <cstring>

#include "ddpm/backend/eigen/common.hpp"

namespace ddpm::backend::eigen_detail {

struct ConvGeom {
  index_t N, Ci, H, W, Co, KH, KW, OH, OW, HW, P, KK, K;
  index_t s, pt, pl;
  bool pointwise;

  template <class T>
  ConvGeom(ConstTensorView<T> x, ConstTensorView<T> w, const Conv2dParams& p)
      : N(x.dim(0)), Ci(x.dim(1)), H(x.dim(2)), W(x.dim(3)), Co(w.dim(0)), KH(w.dim(2)), KW(w.dim(3)),
        OH(p.out_h(H, KH)), OW(p.out_w(W, KW)), HW(H * W), P(OH * OW), KK(KH * KW), K(Ci * KH * KW), s(p.stride),
        pt(p.pad_top), pl(p.pad_left),
        pointwise(KH == 1 && KW == 1 && p.stride == 1 && p.pad_top == 0 && p.pad_bottom == 0 && p.pad_left == 0 &&
                  p.pad_right == 0) {}

  // Pixels per tile so that `rows` rows of col take about `bytes`.
  index_t tile(index_t rows, std::size_t elem, std::size_t bytes = 96 * 1024) const {
    const index_t t = static_cast<index_t>(bytes / (elem * static_cast<std::size_t>(std::max<index_t>(rows, 1))));
    const index_t tw = std::max<index_t>(64, t / 16 * 16);
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

template <class T>
void conv2d_forward(ConstTensorView<T> xv, ConstTensorView<T> wv, ConstTensorView<T> bv, Conv2dParams p,
                    TensorView<T> yv) {
  const ConvGeom g(xv, wv, p);
  if (g.N == 0 || g.Co == 0 || g.P == 0) return;
  const T *x = xv.data(), *w = wv.data(), *b = bv.data();
  T* y = yv.data();
  if (g.K == 0) {
    for (index_t i = 0; i < g.N * g.Co; ++i) std::fill(y + i * g.P, y + (i + 1) * g.P, b ? b[i % g.Co] : T{});
    return;
  }
  const double flops = 2.0 * static_cast<double>(g.N * g.Co) * static_cast<double>(g.K * g.P);
  const int T_ = threads_for(flops, 2e5);
  const index_t nb = g.N - g.N % T_;  // images spread whole over the threads
  if (nb > 0)
    parallel(T_, [&](int tid, int parts) {
      const auto [n0, n1] = split_range(nb, parts, tid);
      for (index_t n = n0; n < n1; ++n)
        conv_fwd_pixels(g, x + n * g.Ci * g.HW, w, b, y + n * g.Co * g.P, index_t{0}, g.P);
    });
  for (index_t n = nb; n < g.N; ++n)
    parallel(T_, [&](int tid, int parts) {
      const auto [p0, p1] = split_range(g.P, parts, tid, 16);
      conv_fwd_pixels(g, x + n * g.Ci * g.HW, w, b, y + n * g.Co * g.P, p0, p1);
    });
}

template <class T>
void conv2d_backward(ConstTensorView<T> xv, ConstTensorView<T> wv, ConstTensorView<T> dyv, Conv2dParams p,
                     TensorView<T> dxv, TensorView<T> dwv, TensorView<T> dbv) {
  const ConvGeom g(xv, wv, p);
  const T *x = xv.data(), *w = wv.data(), *dy = dyv.data();
  T *dx = dxv.data(), *dw = dwv.data(), *db = dbv.data();
  if (db && g.P > 0)
    for (index_t n = 0; n < g.N; ++n)
      for (index_t co = 0; co < g.Co; ++co) db[co] += CArrMap<T>(dy + (n * g.Co + co) * g.P, g.P).sum();
  if (!dx && !dw) return;
  if (g.P == 0 || g.Co == 0 || g.K == 0) {
    if (dx) std::fill(dx, dx + g.N * g.Ci * g.HW, T{});
    return;
  }
  const double flops = 2.0 * static_cast<double>(g.N * g.Co) * static_cast<double>(g.K * g.P) * ((dx && dw) ? 2 : 1);
  const int T_ = threads_for(flops, 2e5);
  // Thread 0 accumulates into dw itself, thread t > 0 into partial t-1.
  const index_t wsz = g.Co * g.K;
  T* partial = (dw && T_ > 1) ? scratch<T>(kPartial, static_cast<std::size_t>((T_ - 1) * wsz)) : nullptr;
  int used = 1;
  auto target = [&](int tid) -> T* { return !dw ? nullptr : tid == 0 ? dw : partial + (tid - 1) * wsz; };
  const index_t nb = g.N - g.N % T_;
  parallel(T_, [&](int tid, int parts) {
    if (tid == 0) used = parts;
    T* dwt = target(tid);
    if (tid > 0 && dwt) std::fill(dwt, dwt + wsz, T{});
    const auto [n0, n1] = split_range(nb, parts, tid);
    for (index_t n = n0; n < n1; ++n)
      conv_bwd_channels(g, x + n * g.Ci * g.HW, w, dy + n * g.Co * g.P, dx ? dx + n * g.Ci * g.HW : nullptr, dwt,
                        index_t{0}, g.Ci);
  });
  for (index_t n = nb; n < g.N; ++n)
    parallel(T_, [&](int tid, int parts) {
      const auto [c0, c1] = split_range(g.Ci, parts, tid);
      conv_bwd_channels(g, x + n * g.Ci * g.HW, w, dy + n * g.Co * g.P, dx ? dx + n * g.Ci * g.HW : nullptr,
                        target(tid), c0, c1);
    });
  if (dw)
    for (int t = 1; t < used; ++t) ArrMap<T>(dw, wsz) += CArrMap<T>(partial + (t - 1) * wsz, wsz);
}

}  // namespace ddpm::backend::eigen_detail
