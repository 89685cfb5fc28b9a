#pragma once
// Linear, GroupNorm, SiLU and nearest 2x upsampling for backend::Eigen:
// vectorised with Eigen arrays, threaded over independent slices (rows,
// (n, group) pairs, image planes, element chunks). Parameter gradients are
// reduced in a fixed order, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>

#include "ddpm/backend/eigen/common.hpp"

namespace ddpm::backend::eigen_detail {

// ---- Linear ---------------------------------------------------------------------
template <class T>
void linear_forward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> b, TensorView<T> y) {
  const index_t out = w.dim(0), in = w.dim(1), rows = in ? x.numel() / in : 0;
  if (rows == 0 || out == 0) return;
  if (b.data())
    for (index_t r = 0; r < rows; ++r) std::copy(b.data(), b.data() + out, y.data() + r * out);
  gemm(Trans::No, Trans::Yes, rows, out, in, T{1}, x.data(), in, w.data(), in, b.data() ? T{1} : T{0}, y.data(),
       out);
}

template <class T>
void linear_backward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> dy, TensorView<T> dx,
                     TensorView<T> dw, TensorView<T> db) {
  const index_t out = w.dim(0), in = w.dim(1), rows = in ? x.numel() / in : 0;
  if (dx.data()) gemm(Trans::No, Trans::No, rows, in, out, T{1}, dy.data(), out, w.data(), in, T{0}, dx.data(), in);
  if (dw.data()) gemm(Trans::Yes, Trans::No, out, in, rows, T{1}, dy.data(), out, x.data(), in, T{1}, dw.data(), in);
  if (db.data() && rows > 0 && out > 0) {
    auto acc = mat(db.data(), 1, out, out);
    for (index_t r = 0; r < rows; ++r) acc += cmat(dy.data() + r * out, 1, out, out);
  }
}

// ---- GroupNorm --------------------------------------------------------------------
template <class T>
void group_norm_forward(ConstTensorView<T> xv, int groups, T eps, ConstTensorView<T> gamma, ConstTensorView<T> beta,
                        TensorView<T> yv, TensorView<T> mean, TensorView<T> rstd) {
  const index_t N = xv.dim(0), C = xv.dim(1), S = (N > 0 && C > 0) ? xv.numel() / (N * C) : 0, G = groups;
  if (N == 0 || C == 0 || G <= 0) return;
  const index_t cg = C / G, count = cg * S, pairs = N * G;
  const T *x = xv.data(), *ga = gamma.data(), *be = beta.data();
  T* y = yv.data();
  parallel(threads_for(3.0 * static_cast<double>(xv.numel()), 3e4), [&](int tid, int parts) {
    const auto [q0, q1] = split_range(pairs, parts, tid);
    for (index_t q = q0; q < q1; ++q) {
      const index_t n = q / G, g = q % G;
      const T* xs = x + (n * C + g * cg) * S;
      const auto xa = CArrMap<T>(xs, count);
      const T mu = count ? xa.sum() / static_cast<T>(count) : T{};
      const T var = count ? (xa - mu).square().sum() / static_cast<T>(count) : T{};
      const T r = T{1} / std::sqrt(var + eps);
      if (mean.data()) mean[q] = mu;
      if (rstd.data()) rstd[q] = r;
      for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
        const T a = r * (ga ? ga[c] : T{1});
        const T sh = (be ? be[c] : T{}) - mu * a;
        ArrMap<T>(y + (n * C + c) * S, S) = CArrMap<T>(x + (n * C + c) * S, S) * a + sh;
      }
    }
  });
}

template <class T>
void group_norm_backward(ConstTensorView<T> xv, int groups, ConstTensorView<T> gamma, ConstTensorView<T> mean,
                         ConstTensorView<T> rstd, ConstTensorView<T> dyv, TensorView<T> dxv, TensorView<T> dgamma,
                         TensorView<T> dbeta) {
  const index_t N = xv.dim(0), C = xv.dim(1), S = (N > 0 && C > 0) ? xv.numel() / (N * C) : 0, G = groups;
  if (N == 0 || C == 0 || G <= 0) return;
  const index_t cg = C / G, pairs = N * G;
  const T *x = xv.data(), *ga = gamma.data(), *dy = dyv.data();
  T* dx = dxv.data();
  // Per (n, c): s1 = sum dy, s2 = sum dy * xhat.
  T* st = scratch<T>(kStats, static_cast<std::size_t>(2 * N * C));
  parallel(threads_for(4.0 * static_cast<double>(xv.numel()), 3e4), [&](int tid, int parts) {
    const auto [q0, q1] = split_range(pairs, parts, tid);
    for (index_t q = q0; q < q1; ++q) {
      const index_t n = q / G, g = q % G;
      const T mu = mean[q], r = rstd[q];
      T sum_g{}, sum_gx{};
      for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
        const auto xa = CArrMap<T>(x + (n * C + c) * S, S);
        const auto da = CArrMap<T>(dy + (n * C + c) * S, S);
        const T s1 = da.sum(), s2 = (da * (xa - mu)).sum() * r;
        st[2 * (n * C + c)] = s1;
        st[2 * (n * C + c) + 1] = s2;
        const T gc = ga ? ga[c] : T{1};
        sum_g += gc * s1;
        sum_gx += gc * s2;
      }
      if (!dx) continue;
      const T M = static_cast<T>(cg * S);
      const T mean_g = sum_g / M, mean_gx = sum_gx / M;
      // dx = r*(gc*dy - mean_g - (x - mu)*r*mean_gx) = A*dy + B*x + D
      const T B = -r * r * mean_gx, D = r * r * mean_gx * mu - r * mean_g;
      for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
        const T A = r * (ga ? ga[c] : T{1});
        ArrMap<T>(dx + (n * C + c) * S, S) =
            CArrMap<T>(dy + (n * C + c) * S, S) * A + CArrMap<T>(x + (n * C + c) * S, S) * B + D;
      }
    }
  });
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c) {
      if (dbeta.data()) dbeta[c] += st[2 * (n * C + c)];
      if (dgamma.data()) dgamma[c] += st[2 * (n * C + c) + 1];
    }
}

// ---- SiLU -------------------------------------------------------------------------
template <class T>
void silu_forward(ConstTensorView<T> xv, TensorView<T> yv) {
  const index_t n = xv.numel();
  const T* x = xv.data();
  T* y = yv.data();
  parallel(threads_for(20.0 * static_cast<double>(n), 2e5), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, 64);
    if (i1 <= i0) return;
    const auto xa = CArrMap<T>(x + i0, i1 - i0);
    ArrMap<T>(y + i0, i1 - i0) = xa / (T{1} + (-xa).exp());
  });
}

template <class T>
void silu_backward(ConstTensorView<T> xv, ConstTensorView<T> dyv, TensorView<T> dxv) {
  const index_t n = xv.numel();
  const T *x = xv.data(), *dy = dyv.data();
  T* dx = dxv.data();
  parallel(threads_for(24.0 * static_cast<double>(n), 2e5), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, 64);
    constexpr index_t kBlock = 256;
    alignas(64) T sbuf[kBlock];
    for (index_t b0 = i0; b0 < i1; b0 += kBlock) {
      const index_t len = std::min(kBlock, i1 - b0);
      const auto xa = CArrMap<T>(x + b0, len);
      auto s = ArrMap<T>(sbuf, len);
      s = (T{1} + (-xa).exp()).inverse();
      ArrMap<T>(dx + b0, len) = CArrMap<T>(dy + b0, len) * s * (T{1} + xa * (T{1} - s));
    }
  });
}

// ---- nearest 2x upsampling --------------------------------------------------------
template <class T>
void upsample_nearest2x_forward(ConstTensorView<T> xv, TensorView<T> yv) {
  const index_t planes = xv.dim(0) * xv.dim(1), H = xv.dim(2), W = xv.dim(3);
  const T* x = xv.data();
  T* y = yv.data();
  parallel(threads_for(4.0 * static_cast<double>(xv.numel()), 1e5), [&](int tid, int parts) {
    const auto [p0, p1] = split_range(planes, parts, tid);
    for (index_t p = p0; p < p1; ++p)
      for (index_t i = 0; i < H; ++i) {
        const T* src = x + (p * H + i) * W;
        T* d0 = y + (p * 2 * H + 2 * i) * 2 * W;
        for (index_t j = 0; j < W; ++j) d0[2 * j] = d0[2 * j + 1] = src[j];
        std::copy(d0, d0 + 2 * W, d0 + 2 * W);
      }
  });
}

template <class T>
void upsample_nearest2x_backward(ConstTensorView<T> dyv, TensorView<T> dxv) {
  const index_t planes = dxv.dim(0) * dxv.dim(1), H = dxv.dim(2), W = dxv.dim(3);
  const T* dy = dyv.data();
  T* dx = dxv.data();
  parallel(threads_for(4.0 * static_cast<double>(dyv.numel()), 1e5), [&](int tid, int parts) {
    const auto [p0, p1] = split_range(planes, parts, tid);
    for (index_t p = p0; p < p1; ++p)
      for (index_t i = 0; i < H; ++i) {
        const T* r0 = dy + (p * 2 * H + 2 * i) * 2 * W;
        const T* r1 = r0 + 2 * W;
        T* d = dx + (p * H + i) * W;
        for (index_t j = 0; j < W; ++j) d[j] = r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1];
      }
  });
}

}  // namespace ddpm::backend::eigen_detail
