#pragma once
// The forward (noising) process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
// (Ho et al. 2020, eq. 4), and the v-prediction target (Salimans & Ho 2022).
// One timestep per batch element (dim 0), or one for the whole batch.
// Coefficients are computed in T from the schedule, as diffusers'
// add_noise / get_velocity do after casting alphas_cumprod to the sample dtype.
#include <cmath>
#include <cstdint>
#include <span>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/schedule.hpp"

namespace ddpm {

namespace detail {

// Calls f(a, b, first, count) per batch element with a = sqrt(abar_t), b = sqrt(1 - abar_t).
template <Scalar T, class F>
void per_batch_coefficients(const NoiseSchedule<T>& s, const Shape& shape, std::span<const std::int64_t> timesteps,
                            F&& f) {
  require(shape.rank() >= 1, "x0: needs a batch dimension, got shape ", shape.str());
  const index_t batch = shape[0];
  const auto nt = static_cast<index_t>(timesteps.size());
  require(nt == batch || nt == 1, "timesteps: expected one per batch element (", batch, ") or one in all, got ", nt);
  const index_t per = batch > 0 ? shape.numel() / batch : 0;
  for (index_t i = 0; i < batch; ++i) {
    const T abar = s.alpha_cumprod(timesteps[static_cast<std::size_t>(nt == 1 ? 0 : i)]);
    f(std::sqrt(abar), std::sqrt(T(1) - abar), i * per, per);
  }
}

}  // namespace detail

// x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps  (diffusers' add_noise).
template <Scalar T>
void q_sample(const NoiseSchedule<T>& s, ConstTensorView<T> x0, std::span<const std::int64_t> timesteps,
              ConstTensorView<T> noise, TensorView<T> out) {
  require_same_shape(x0.shape(), noise.shape(), "q_sample: x0 vs noise");
  require_same_shape(x0.shape(), out.shape(), "q_sample: x0 vs out");
  detail::per_batch_coefficients(s, x0.shape(), timesteps, [&](T a, T b, index_t first, index_t n) {
    for (index_t i = first; i < first + n; ++i) out[i] = a * x0[i] + b * noise[i];
  });
}

template <Scalar T>
Tensor<T> q_sample(const NoiseSchedule<T>& s, ConstTensorView<T> x0, std::span<const std::int64_t> timesteps,
                   ConstTensorView<T> noise) {
  Tensor<T> out(x0.shape());
  q_sample(s, x0, timesteps, noise, out.view());
  return out;
}

// v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0  (diffusers' get_velocity).
template <Scalar T>
void velocity(const NoiseSchedule<T>& s, ConstTensorView<T> x0, ConstTensorView<T> noise,
              std::span<const std::int64_t> timesteps, TensorView<T> out) {
  require_same_shape(x0.shape(), noise.shape(), "velocity: x0 vs noise");
  require_same_shape(x0.shape(), out.shape(), "velocity: x0 vs out");
  detail::per_batch_coefficients(s, x0.shape(), timesteps, [&](T a, T b, index_t first, index_t n) {
    for (index_t i = first; i < first + n; ++i) out[i] = a * noise[i] - b * x0[i];
  });
}

template <Scalar T>
Tensor<T> velocity(const NoiseSchedule<T>& s, ConstTensorView<T> x0, ConstTensorView<T> noise,
                   std::span<const std::int64_t> timesteps) {
  Tensor<T> out(x0.shape());
  velocity(s, x0, noise, timesteps, out.view());
  return out;
}

}  // namespace ddpm
