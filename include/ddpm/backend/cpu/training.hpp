#pragma once
// The training step's ops for backend::Cpu: q_sample / the v target
// (batch_axpby), the MSE loss, the gradient norm's sum of squares, the
// finiteness check, Adam(W) and EMA.
//
// Element-wise updates are split into ranges over the threads and use
// Reference's element formula, so they give Reference's bits for any thread
// count. The loss sums each sample on one thread and the samples in order
// (Reference's order). sum_squares stays serial: a split sum would change the
// gradient norm's rounding (and with it the clipped gradients) with the thread
// count; it reads each gradient once, a small part of a step.
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/backend/cpu/common.hpp"
#include "ddpm/backend/reference.hpp"

namespace ddpm::backend::cpu_detail {

template <class T>
void run(ops::batch_axpby_t, std::span<const T> a, ConstTensorView<T> xv, std::span<const T> b, ConstTensorView<T> zv,
         TensorView<T> yv) {
  const index_t N = xv.dim(0), per = N ? xv.numel() / N : 0;
  const T *x = xv.data(), *z = zv.data();
  T* y = yv.data();
  parallel(threads_for(3.0 * static_cast<double>(xv.numel()), 1e5), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(N * per, parts, tid, 64);
    for (index_t i = i0; i < i1;) {
      const index_t n = i / per, end = std::min(i1, (n + 1) * per);
      const T an = a[static_cast<std::size_t>(n)], bn = b[static_cast<std::size_t>(n)];
      for (; i < end; ++i) y[i] = an * x[i] + bn * z[i];
    }
  });
}

template <class T>
double run(ops::mse_loss_t, ConstTensorView<T> predv, ConstTensorView<T> targetv, std::span<const double> weights,
           TensorView<T> dpredv) {
  const index_t n = predv.dim(0), per = n ? predv.numel() / n : 0;
  const T *pred = predv.data(), *target = targetv.data();
  T* dpred = dpredv.data();
  std::vector<double> sums(static_cast<std::size_t>(n));
  parallel(threads_for(3.0 * static_cast<double>(predv.numel()), 1e5), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid);
    for (index_t i = i0; i < i1; ++i) {
      const double w = weights.empty() ? 1.0 : weights[static_cast<std::size_t>(i)];
      const T g = static_cast<T>(2.0 * w / static_cast<double>(n * per));
      double s = 0;
      for (index_t j = i * per; j < (i + 1) * per; ++j) {
        const T d = pred[j] - target[j];
        s += static_cast<double>(d) * static_cast<double>(d);
        dpred[j] = g * d;
      }
      sums[static_cast<std::size_t>(i)] = s;
    }
  });
  double loss = 0;
  for (index_t i = 0; i < n; ++i) {
    const double w = weights.empty() ? 1.0 : weights[static_cast<std::size_t>(i)];
    loss += w * sums[static_cast<std::size_t>(i)] / static_cast<double>(per);
  }
  return loss / static_cast<double>(n);
}

template <class T>
double run(ops::sum_squares_t, ConstTensorView<T> x) {
  return Reference::run(ops::sum_squares, x);
}

template <class T>
bool run(ops::all_finite_t, ConstTensorView<T> xv) {
  const index_t n = xv.numel();
  const T* x = xv.data();
  const int want = threads_for(static_cast<double>(n), 1e5);
  std::vector<char> ok(static_cast<std::size_t>(want), 1);
  parallel(want, [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, 64);
    bool good = true;
    for (index_t i = i0; i < i1; ++i) good &= std::isfinite(x[i]);
    ok[static_cast<std::size_t>(tid)] = good;
  });
  for (char c : ok)
    if (!c) return false;
  return true;
}

template <class T>
void run(ops::adam_update_t, TensorView<T> pv, ConstTensorView<T> gv, TensorView<T> mv, TensorView<T> vv,
         AdamParams s) {
  const auto c = s.coefficients<T>();
  const index_t n = pv.numel();
  parallel(threads_for(7.0 * static_cast<double>(n), 1e5), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, 64);
    Reference::adam_update_range(c, pv.data(), gv.data(), mv.data(), vv.data(), i0, i1);
  });
}

template <class T>
void run(ops::ema_update_t, ConstTensorView<T> pv, T decay, TensorView<T> shadowv) {
  const index_t n = pv.numel();
  const T* p = pv.data();
  T* shadow = shadowv.data();
  parallel(threads_for(3.0 * static_cast<double>(n), 1e5), [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, parts, tid, 64);
    for (index_t i = i0; i < i1; ++i) shadow[i] += (1 - decay) * (p[i] - shadow[i]);
  });
}

}  // namespace ddpm::backend::cpu_detail
