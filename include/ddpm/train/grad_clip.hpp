#pragma once
// Gradient clipping by global L2 norm, as torch.nn.utils.clip_grad_norm_:
// if ||g|| > max_norm, g <- g * max_norm / (||g|| + 1e-6).
#include <cmath>
#include <span>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::train {

// The global L2 norm, accumulated in double so it does not depend on the
// parameter count's rounding in float (ops::sum_squares on backend B).
template <backend::Backend B, Scalar T, class M>
double global_norm(ConstTensorView<T, M> g) {
  return std::sqrt(B::run(ops::sum_squares, g));
}

// Clips in place; returns the norm before clipping (non-finite when a
// gradient is: the caller decides what a bad step means).
template <backend::Backend B, Scalar T, class M>
double clip_grad_norm(TensorView<T, M> g, double max_norm) {
  const double norm = global_norm<B>(ConstTensorView<T, M>(g));
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm)
    B::run(ops::add, ConstTensorView<T, M>(g), {}, static_cast<T>(max_norm / (norm + 1e-6)), g);
  return norm;
}

// The same on host spans.
template <Scalar T>
double global_norm(std::span<const T> g) {
  return global_norm<backend::Reference>(ConstTensorView<T>(g.data(), {static_cast<index_t>(g.size())}));
}
template <Scalar T>
double clip_grad_norm(std::span<T> g, double max_norm) {
  return clip_grad_norm<backend::Reference>(TensorView<T>(g.data(), {static_cast<index_t>(g.size())}), max_norm);
}

}  // namespace ddpm::train
