#pragma once
// Linear, GroupNorm, SiLU, nearest 2x upsampling, the glue between layers,
// copies, scale-shift, embeddings and the timestep embedding for
// backend::Cpu: vectorised with Eigen arrays, threaded over independent
// slices (rows, (n, group) pairs, image planes, element chunks). Parameter
// gradients are reduced in a fixed order, so results do not depend on the
// thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>

#include "ddpm/backend/cpu/common.hpp"
#include "ddpm/backend/reference.hpp"

namespace ddpm::backend::cpu_detail {

// Work per element of each op, in the unit of the Tuning threshold it is
// weighed against (threads_for): relative arithmetic cost for GroupNorm and
// SiLU, where an exp counts about 20; element reads and writes for the
// memory-bound ops.
inline constexpr double kGroupNormCost = 3.0;               // mean, variance, scale and shift
inline constexpr double kGroupNormBackwardCost = 4.0;       // two sums, then one multiply-add per term
inline constexpr double kGroupNormSiluCost = 20.0;          // the SiLU's exp dominates
inline constexpr double kGroupNormSiluBackwardCost = 28.0;  // GroupNorm's backward plus the SiLU's
inline constexpr double kSiluCost = 20.0;                   // an exp and a division
inline constexpr double kSiluBackwardCost = 24.0;           // the same, plus the derivative's products
inline constexpr double kUpsampleTouches = 4.0;             // four output values per input value
inline constexpr double kReadWriteTouches = 2.0;            // a read and a write per element
// Element-wise ops split their range at multiples of this many values (whole
// 64-byte lines of an aligned buffer), so no two threads write one line.
inline constexpr index_t kElementSplitGrain = 64;
// The channel concatenation splits at multiples of this many values (a line
// of floats): its runs are whole channel planes, often short.
inline constexpr index_t kCopySplitGrain = 16;

// ---- Linear ---------------------------------------------------------------------
template <class T>
void run(ops::linear_forward_t, ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> b, TensorView<T> y) {
  const index_t out = w.dim(0), in = w.dim(1), rows = in ? x.numel() / in : 0;
  if (rows == 0 || out == 0) return;
  if (b.data())
    for (index_t r = 0; r < rows; ++r) std::copy(b.data(), b.data() + out, y.data() + r * out);
  run(ops::gemm, Trans::No, Trans::Yes, rows, out, in, T{1}, x.data(), in, w.data(), in, b.data() ? T{1} : T{0},
      y.data(), out);
}

template <class T>
void run(ops::linear_backward_t, ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> dy, TensorView<T> dx,
         TensorView<T> dw, TensorView<T> db) {
  const index_t out = w.dim(0), in = w.dim(1), rows = in ? x.numel() / in : 0;
  if (dx.data())
    run(ops::gemm, Trans::No, Trans::No, rows, in, out, T{1}, dy.data(), out, w.data(), in, T{0}, dx.data(), in);
  if (dw.data())
    run(ops::gemm, Trans::Yes, Trans::No, out, in, rows, T{1}, dy.data(), out, x.data(), in, T{1}, dw.data(), in);
  if (db.data() && rows > 0 && out > 0) {
    auto acc = mat(db.data(), 1, out, out);
    for (index_t r = 0; r < rows; ++r) acc += cmat(dy.data() + r * out, 1, out, out);
  }
}

// dx = dy * silu'(x) = dy * s * (1 + x * (1 - s)), s = sigmoid(x), over n
// values in L1-sized blocks; dx may be x itself. (SiLU's backward, and the
// fused GroupNorm+SiLU's.)
template <class T>
void silu_grad(const T* x, const T* dy, T* dx, index_t n) {
  constexpr index_t kBlock = 256;
  alignas(64) T sbuf[kBlock];
  for (index_t b0 = 0; b0 < n; b0 += kBlock) {
    const index_t len = std::min(kBlock, n - b0);
    const auto xa = CArrMap<T>(x + b0, len);
    auto s = ArrMap<T>(sbuf, len);
    s = (T{1} + (-xa).exp()).inverse();
    ArrMap<T>(dx + b0, len) = CArrMap<T>(dy + b0, len) * s * (T{1} + xa * (T{1} - s));
  }
}

// ---- GroupNorm --------------------------------------------------------------------
// The statistics of group q = (n, g): mean and 1/sqrt(var + eps), two passes
// (the group, cg * S values, stays in L1 between them).
template <class T>
std::pair<T, T> group_stats(const T* xs, index_t count, T eps) {
  const auto xa = CArrMap<T>(xs, count);
  const T mu = count ? xa.sum() / static_cast<T>(count) : T{};
  const T var = count ? (xa - mu).square().sum() / static_cast<T>(count) : T{};
  return {mu, T{1} / std::sqrt(var + eps)};
}

// y = act(group_norm(x)); act(u, out) writes one channel plane.
template <class T, class Act>
void group_norm_forward_impl(ConstTensorView<T> xv, int groups, T eps, ConstTensorView<T> gamma,
                             ConstTensorView<T> beta, TensorView<T> yv, TensorView<T> mean, TensorView<T> rstd,
                             double cost_per_element, Act act) {
  const index_t N = xv.dim(0), C = xv.dim(1), S = (N > 0 && C > 0) ? xv.numel() / (N * C) : 0, G = groups;
  if (N == 0 || C == 0 || G <= 0) return;
  const index_t cg = C / G, pairs = N * G;
  const T *x = xv.data(), *ga = gamma.data(), *be = beta.data();
  T* y = yv.data();
  parallel(threads_for(cost_per_element * static_cast<double>(xv.numel()), tuning().min_norm_work_per_thread),
           [&](int tid, int parts) {
    const auto [q0, q1] = split_range(pairs, parts, tid);
    for (index_t q = q0; q < q1; ++q) {
      const index_t n = q / G, g = q % G;
      const auto [mu, r] = group_stats(x + (n * C + g * cg) * S, cg * S, eps);
      if (mean.data()) mean[q] = mu;
      if (rstd.data()) rstd[q] = r;
      for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
        const T a = r * (ga ? ga[c] : T{1});
        const T sh = (be ? be[c] : T{}) - mu * a;
        act(CArrMap<T>(x + (n * C + c) * S, S) * a + sh, ArrMap<T>(y + (n * C + c) * S, S));
      }
    }
  });
}

template <class T>
void run(ops::group_norm_forward_t, ConstTensorView<T> xv, int groups, T eps, ConstTensorView<T> gamma,
         ConstTensorView<T> beta, TensorView<T> yv, TensorView<T> mean, TensorView<T> rstd) {
  group_norm_forward_impl(xv, groups, eps, gamma, beta, yv, mean, rstd, kGroupNormCost,
                          [](const auto& u, auto out) { out = u; });
}

// silu(group_norm(x)) in one pass: the normalised values never leave registers.
template <class T>
void run(ops::group_norm_silu_forward_t, ConstTensorView<T> xv, int groups, T eps, ConstTensorView<T> gamma,
         ConstTensorView<T> beta, TensorView<T> yv, TensorView<T> mean, TensorView<T> rstd) {
  group_norm_forward_impl(xv, groups, eps, gamma, beta, yv, mean, rstd, kGroupNormSiluCost,
                          [](const auto& u, auto out) {
                            out = u;
                            out = out / (T{1} + (-out).exp());
                          });
}

// GroupNorm backward; group_dy(n, g, off) points at the output gradient of
// group (n, g), whose cg * S contiguous values start at element off: dy + off
// itself, or dy through the SiLU in a scratch buffer.
template <class T, class GroupDy>
void group_norm_backward_impl(ConstTensorView<T> xv, int groups, ConstTensorView<T> gamma, ConstTensorView<T> mean,
                              ConstTensorView<T> rstd, TensorView<T> dxv, TensorView<T> dgamma, TensorView<T> dbeta,
                              double cost_per_element, GroupDy group_dy) {
  const index_t N = xv.dim(0), C = xv.dim(1), S = (N > 0 && C > 0) ? xv.numel() / (N * C) : 0, G = groups;
  if (N == 0 || C == 0 || G <= 0) return;
  const index_t cg = C / G, pairs = N * G;
  const T *x = xv.data(), *ga = gamma.data();
  T* dx = dxv.data();
  // Per (n, c): s1 = sum dy, s2 = sum dy * xhat.
  T* st = scratch<T>(kStats, static_cast<std::size_t>(2 * N * C));
  parallel(threads_for(cost_per_element * static_cast<double>(xv.numel()), tuning().min_norm_work_per_thread),
           [&](int tid, int parts) {
    const auto [q0, q1] = split_range(pairs, parts, tid);
    for (index_t q = q0; q < q1; ++q) {
      const index_t n = q / G, g = q % G;
      const T mu = mean[q], r = rstd[q];
      const index_t off = (n * C + g * cg) * S;
      const T* dy = group_dy(n, g, off);  // channel c at dy + (c - g * cg) * S
      T sum_g{}, sum_gx{};
      for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
        const auto xa = CArrMap<T>(x + (n * C + c) * S, S);
        const auto da = CArrMap<T>(dy + (c - g * cg) * S, S);
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
            CArrMap<T>(dy + (c - g * cg) * S, S) * A + CArrMap<T>(x + (n * C + c) * S, S) * B + D;
      }
    }
  });
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c) {
      if (dbeta.data()) dbeta[c] += st[2 * (n * C + c)];
      if (dgamma.data()) dgamma[c] += st[2 * (n * C + c) + 1];
    }
}

template <class T>
void run(ops::group_norm_backward_t, ConstTensorView<T> xv, int groups, ConstTensorView<T> gamma,
         ConstTensorView<T> mean, ConstTensorView<T> rstd, ConstTensorView<T> dyv, TensorView<T> dxv,
         TensorView<T> dgamma, TensorView<T> dbeta) {
  group_norm_backward_impl(xv, groups, gamma, mean, rstd, dxv, dgamma, dbeta, kGroupNormBackwardCost,
                           [&](index_t, index_t, index_t off) { return dyv.data() + off; });
}

// Backward of silu(group_norm(x)): per group, the normalised values are
// recomputed from x and the saved statistics (nothing else was kept), the
// gradient through the SiLU goes to an L1-sized buffer, then GroupNorm's.
template <class T>
void run(ops::group_norm_silu_backward_t, ConstTensorView<T> xv, int groups, ConstTensorView<T> gamma,
         ConstTensorView<T> beta, ConstTensorView<T> mean, ConstTensorView<T> rstd, ConstTensorView<T> dyv,
         TensorView<T> dxv, TensorView<T> dgamma, TensorView<T> dbeta) {
  const index_t C = xv.dim(1), S = xv.dim(0) > 0 && C > 0 ? xv.numel() / (xv.dim(0) * C) : 0, G = groups,
                cg = C / G;
  const T *x = xv.data(), *ga = gamma.data(), *be = beta.data(), *dy = dyv.data();
  group_norm_backward_impl(xv, groups, gamma, mean, rstd, dxv, dgamma, dbeta, kGroupNormSiluBackwardCost,
                           [&](index_t n, index_t g, index_t off) {
    T* d = scratch<T>(kGroup, static_cast<std::size_t>(cg * S));
    const T mu = mean[n * G + g], r = rstd[n * G + g];
    for (index_t k = 0; k < cg; ++k) {  // channel g * cg + k
      const index_t c = g * cg + k;
      const T a = r * (ga ? ga[c] : T{1});
      const T sh = (be ? be[c] : T{}) - mu * a;
      T* u = d + k * S;
      ArrMap<T>(u, S) = CArrMap<T>(x + off + k * S, S) * a + sh;  // as in forward
      silu_grad(u, dy + off + k * S, u, S);
    }
    return static_cast<const T*>(d);
  });
}

// ---- SiLU -------------------------------------------------------------------------
template <class T>
void run(ops::silu_forward_t, ConstTensorView<T> xv, TensorView<T> yv) {
  const index_t n = xv.numel();
  const T* x = xv.data();
  T* y = yv.data();
  parallel(threads_for(kSiluCost * static_cast<double>(n), tuning().min_flops_per_thread), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, kElementSplitGrain);
    if (i1 <= i0) return;
    const auto xa = CArrMap<T>(x + i0, i1 - i0);
    ArrMap<T>(y + i0, i1 - i0) = xa / (T{1} + (-xa).exp());
  });
}

template <class T>
void run(ops::silu_backward_t, ConstTensorView<T> xv, ConstTensorView<T> dyv, TensorView<T> dxv) {
  const index_t n = xv.numel();
  const T *x = xv.data(), *dy = dyv.data();
  T* dx = dxv.data();
  parallel(threads_for(kSiluBackwardCost * static_cast<double>(n), tuning().min_flops_per_thread),
           [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, kElementSplitGrain);
    if (i1 > i0) silu_grad(x + i0, dy + i0, dx + i0, i1 - i0);
  });
}

// ---- nearest 2x upsampling --------------------------------------------------------
template <class T>
void run(ops::upsample_nearest2x_forward_t, ConstTensorView<T> xv, TensorView<T> yv) {
  const index_t planes = xv.dim(0) * xv.dim(1), H = xv.dim(2), W = xv.dim(3);
  const T* x = xv.data();
  T* y = yv.data();
  parallel(threads_for(kUpsampleTouches * static_cast<double>(xv.numel()), tuning().min_touches_per_thread),
           [&](int tid, int parts) {
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
void run(ops::upsample_nearest2x_backward_t, ConstTensorView<T> dyv, TensorView<T> dxv) {
  const index_t planes = dxv.dim(0) * dxv.dim(1), H = dxv.dim(2), W = dxv.dim(3);
  const T* dy = dyv.data();
  T* dx = dxv.data();
  parallel(threads_for(kUpsampleTouches * static_cast<double>(dyv.numel()), tuning().min_touches_per_thread),
           [&](int tid, int parts) {
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

// ---- glue between layers ------------------------------------------------------------
// Memory-bound: threads only for tensors large enough to pay for the wake-up.
template <class T>
void run(ops::add_t, ConstTensorView<T> av, ConstTensorView<T> bv, T alpha, TensorView<T> yv) {
  const index_t n = av.numel();
  const T *a = av.data(), *b = bv.data();
  T* y = yv.data();
  parallel(threads_for(kReadWriteTouches * static_cast<double>(n), tuning().min_touches_per_thread),
           [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, kElementSplitGrain);
    if (i1 <= i0) return;
    auto out = ArrMap<T>(y + i0, i1 - i0);
    const auto x = CArrMap<T>(a + i0, i1 - i0);
    if (b && alpha == T{1})
      out = x + CArrMap<T>(b + i0, i1 - i0);
    else if (b)
      out = alpha * (x + CArrMap<T>(b + i0, i1 - i0));
    else
      out = alpha * x;
  });
}

template <class T>
void run(ops::add_channel_bias_t, ConstTensorView<T> xv, ConstTensorView<T> ev, TensorView<T> yv) {
  const index_t NC = ev.numel(), S = NC ? xv.numel() / NC : 0;
  const T *x = xv.data(), *e = ev.data();
  T* y = yv.data();
  parallel(threads_for(kReadWriteTouches * static_cast<double>(xv.numel()), tuning().min_touches_per_thread),
           [&](int tid, int parts) {
    const auto [q0, q1] = split_range(NC, parts, tid);
    for (index_t q = q0; q < q1; ++q) ArrMap<T>(y + q * S, S) = CArrMap<T>(x + q * S, S) + e[q];
  });
}

template <class T>
void run(ops::channel_sum_t, ConstTensorView<T> xv, TensorView<T> yv) {
  const index_t NC = yv.numel(), S = NC ? xv.numel() / NC : 0;
  const T* x = xv.data();
  T* y = yv.data();
  parallel(threads_for(static_cast<double>(xv.numel()), tuning().min_touches_per_thread), [&](int tid, int parts) {
    const auto [q0, q1] = split_range(NC, parts, tid);
    for (index_t q = q0; q < q1; ++q) y[q] = CArrMap<T>(x + q * S, S).sum();
  });
}

// [n, a, b] -> [n, b, a] in 16 x 16 tiles (both sides stay in L1).
template <class T>
void run(ops::transpose_t, ConstTensorView<T> xv, index_t n, index_t a, index_t b, TensorView<T> yv) {
  const T* x = xv.data();
  T* y = yv.data();
  constexpr index_t kTile = 16;
  parallel(threads_for(kReadWriteTouches * static_cast<double>(xv.numel()), tuning().min_touches_per_thread),
           [&](int tid, int parts) {
    const index_t tiles_a = (a + kTile - 1) / kTile;
    const auto [t0, t1] = split_range(n * tiles_a, parts, tid);
    for (index_t t = t0; t < t1; ++t) {
      const index_t m = t / tiles_a, i0 = (t % tiles_a) * kTile, i1 = std::min(a, i0 + kTile);
      const T* src = x + m * a * b;
      T* dst = y + m * a * b;
      for (index_t j0 = 0; j0 < b; j0 += kTile) {
        const index_t j1 = std::min(b, j0 + kTile);
        for (index_t j = j0; j < j1; ++j)
          for (index_t i = i0; i < i1; ++i) dst[j * a + i] = src[i * b + j];
      }
    }
  });
}

// The skip concatenation and its inverse: per image, sa values of a then sb
// of b in y. Threads split y evenly (not by image: batch 1 is one image),
// and copy(q, part, len) is called for each contiguous run: y[q, q + len)
// and the same values of a (part 0) or b (part 1) at offset off.
template <class Copy>
void for_each_channel_block(index_t N, index_t sa, index_t sb, Copy copy) {
  const index_t s = sa + sb;
  parallel(threads_for(static_cast<double>(N * s), tuning().min_touches_per_thread), [&](int tid, int parts) {
    const auto [q0, q1] = split_range(N * s, parts, tid, kCopySplitGrain);
    for (index_t q = q0; q < q1;) {
      const index_t m = q / s, r = q % s;
      const bool in_a = r < sa;
      const index_t len = std::min(q1 - q, (in_a ? sa : s) - r);
      copy(q, in_a ? 0 : 1, in_a ? m * sa + r : m * sb + (r - sa), len);
      q += len;
    }
  });
}

template <class T>
void run(ops::concat_channels_t, ConstTensorView<T> av, ConstTensorView<T> bv, TensorView<T> yv) {
  const index_t N = yv.dim(0);
  if (N == 0) return;
  const T* src[2] = {av.data(), bv.data()};
  T* y = yv.data();
  for_each_channel_block(N, av.numel() / N, bv.numel() / N, [&](index_t q, int part, index_t off, index_t len) {
    std::copy_n(src[part] + off, len, y + q);
  });
}

template <class T>
void run(ops::split_channels_t, ConstTensorView<T> yv, TensorView<T> av, TensorView<T> bv) {
  const index_t N = yv.dim(0);
  if (N == 0) return;
  T* dst[2] = {av.data(), bv.data()};
  const T* y = yv.data();
  for_each_channel_block(N, av.numel() / N, bv.numel() / N, [&](index_t q, int part, index_t off, index_t len) {
    std::copy_n(y + q, len, dst[part] + off);
  });
}

// ---- element-wise maps and copies --------------------------------------------------
// Split into equal ranges over the threads (element-wise: the result does not
// depend on the split).
template <class T, class F>
void for_ranges(index_t n, double touches, F f) {
  parallel(threads_for(touches, 1e5), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, 64);
    if (i1 > i0) f(i0, i1);
  });
}

template <class T>
void run(ops::affine_t, ConstTensorView<T> xv, T a, T b, TensorView<T> yv) {
  const T* x = xv.data();
  T* y = yv.data();
  for_ranges<T>(xv.numel(), 2.0 * static_cast<double>(xv.numel()), [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) y[i] = a * x[i] + b;
  });
}

template <class T>
void run(ops::mul_t, ConstTensorView<T> av, ConstTensorView<T> bv, TensorView<T> yv) {
  const T *a = av.data(), *b = bv.data();
  T* y = yv.data();
  for_ranges<T>(av.numel(), 3.0 * static_cast<double>(av.numel()), [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) y[i] = a[i] * b[i];
  });
}

template <class T>
void run(ops::fill_t, T value, TensorView<T> yv) {
  T* y = yv.data();
  for_ranges<T>(yv.numel(), static_cast<double>(yv.numel()), [&](index_t i0, index_t i1) {
    std::fill(y + i0, y + i1, value);
  });
}

template <class T>
void run(ops::copy_t, ConstTensorView<T> xv, TensorView<T> yv) {
  const T* x = xv.data();
  T* y = yv.data();
  for_ranges<T>(xv.numel(), 2.0 * static_cast<double>(xv.numel()), [&](index_t i0, index_t i1) {
    std::copy(x + i0, x + i1, y + i0);
  });
}

template <class T>
void run(ops::copy_columns_t, ConstTensorView<T> xv, index_t x_col, TensorView<T> yv, index_t y_col, index_t width) {
  const index_t R = xv.rank() ? xv.dim(0) : 0;
  if (R == 0) return;
  const index_t wx = xv.numel() / R, wy = yv.numel() / R;
  const T* x = xv.data();
  T* y = yv.data();
  parallel(threads_for(2.0 * static_cast<double>(R * width), 1e5), [&](int tid, int parts) {
    const auto [r0, r1] = split_range(R, parts, tid);
    for (index_t r = r0; r < r1; ++r) std::copy_n(x + r * wx + x_col, width, y + r * wy + y_col);
  });
}

template <class T>
void run(ops::copy_to_host_t, ConstTensorView<T> xv, TensorView<T> yv) {
  run(ops::copy, xv, yv);
}
template <class T>
void run(ops::copy_from_host_t, ConstTensorView<T> xv, TensorView<T> yv) {
  run(ops::copy, xv, yv);
}

// ---- layers' own steps ----------------------------------------------------------------
// Threads take whole (n, c) planes, so each plane's sums keep Reference's order.
template <class T>
void run(ops::scale_shift_forward_t, ConstTensorView<T> xv, ConstTensorView<T> ev, TensorView<T> yv) {
  const index_t N = xv.dim(0), C = xv.dim(1), NC = N * C, S = NC ? xv.numel() / NC : 0;
  const T *x = xv.data(), *e = ev.data();
  T* y = yv.data();
  parallel(threads_for(2.0 * static_cast<double>(xv.numel()), 1e5), [&](int tid, int parts) {
    const auto [q0, q1] = split_range(NC, parts, tid);
    for (index_t q = q0; q < q1; ++q) {
      const index_t n = q / C, c = q % C;
      const T sc = T{1} + e[n * 2 * C + c], sh = e[n * 2 * C + C + c];
      for (index_t s = q * S; s < (q + 1) * S; ++s) y[s] = x[s] * sc + sh;
    }
  });
}

template <class T>
void run(ops::scale_shift_backward_t, ConstTensorView<T> xv, ConstTensorView<T> ev, ConstTensorView<T> dyv,
         TensorView<T> dxv, TensorView<T> dev) {
  const index_t N = xv.dim(0), C = xv.dim(1), NC = N * C, S = NC ? xv.numel() / NC : 0;
  const T *x = xv.data(), *e = ev.data(), *dy = dyv.data();
  T *dx = dxv.data(), *de = dev.data();
  parallel(threads_for(3.0 * static_cast<double>(xv.numel()), 1e5), [&](int tid, int parts) {
    const auto [q0, q1] = split_range(NC, parts, tid);
    for (index_t q = q0; q < q1; ++q) {
      const index_t n = q / C, c = q % C;
      const T sc = T{1} + e[n * 2 * C + c];
      T dscale{}, dshift{};
      for (index_t s = q * S; s < (q + 1) * S; ++s) {
        dscale += dy[s] * x[s];
        dshift += dy[s];
        dx[s] = dy[s] * sc;
      }
      de[n * 2 * C + c] = dscale;
      de[n * 2 * C + C + c] = dshift;
    }
  });
}

// Embedding rows: a gather (threads split the rows) and its scatter-add
// (threads split the columns, so each gradient element sums in label order).
template <class T>
void run(ops::embedding_forward_t, ConstTensorView<T> tablev, std::span<const std::int64_t> labels,
         TensorView<T> yv) {
  const index_t D = tablev.dim(1), n = static_cast<index_t>(labels.size());
  const T* table = tablev.data();
  T* y = yv.data();
  parallel(threads_for(2.0 * static_cast<double>(n * D), 1e5), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid);
    for (index_t i = i0; i < i1; ++i) std::copy_n(table + labels[static_cast<std::size_t>(i)] * D, D, y + i * D);
  });
}

template <class T>
void run(ops::embedding_backward_t, std::span<const std::int64_t> labels, ConstTensorView<T> dyv,
         TensorView<T> dtablev) {
  const index_t D = dtablev.dim(1), n = static_cast<index_t>(labels.size());
  const T* dy = dyv.data();
  T* dt = dtablev.data();
  parallel(threads_for(2.0 * static_cast<double>(n * D), 1e5), [&](int tid, int parts) {
    const auto [j0, j1] = split_range(D, parts, tid, 16);
    for (index_t i = 0; i < n; ++i) {
      T* row = dt + labels[static_cast<std::size_t>(i)] * D;
      for (index_t j = j0; j < j1; ++j) row[j] += dy[i * D + j];
    }
  });
}

// N x dim values from host timesteps: small; Reference's definition, serial.
template <class T>
void run(ops::timestep_embedding_t, std::span<const double> t, TimestepEmbeddingParams p, TensorView<T> y) {
  Reference::run(ops::timestep_embedding, t, p, y);
}

}  // namespace ddpm::backend::cpu_detail
