#pragma once
// Gradient clipping by global L2 norm, as torch.nn.utils.clip_grad_norm_:
// if ||g|| > max_norm, g <- g * max_norm / (||g|| + 1e-6).
#include <cmath>
#include <span>

#include "ddpm/core/tensor.hpp"

namespace ddpm::train {

// The global L2 norm, accumulated in double so it does not depend on the
// parameter count's rounding in float.
template <Scalar T>
double global_norm(std::span<const T> g) {
  double s = 0;
  for (T x : g) s += static_cast<double>(x) * static_cast<double>(x);
  return std::sqrt(s);
}

// Clips in place; returns the norm before clipping (non-finite when a
// gradient is: the caller decides what a bad step means).
template <Scalar T>
double clip_grad_norm(std::span<T> g, double max_norm) {
  const double norm = global_norm(std::span<const T>(g));
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
    const T scale = static_cast<T>(max_norm / (norm + 1e-6));
    for (T& x : g) x *= scale;
  }
  return norm;
}

}  // namespace ddpm::train
