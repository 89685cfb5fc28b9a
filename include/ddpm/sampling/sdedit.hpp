#pragma once
// Denoising by entering the reverse process part-way (SDEdit, Meng et al.
// 2022; the "strength" of diffusers' img2img pipelines).
//
// An observation y = x_0 + sigma * n (n ~ N(0, I)) is, up to a scale, a
// sample of the forward process: sqrt(abar_t) * y = sqrt(abar_t) x_0 +
// sqrt(abar_t) sigma n has the distribution of x_t when
//   sigma_t := sqrt((1 - abar_t) / abar_t) = sigma.
// So the reverse process can start at that t from x_t = sqrt(abar_t) * y and
// run its remaining steps to a clean sample: the same sampler and loop as
// sampling from noise, only the start differs. (A variance-exploding sampler,
// Euler, holds x_t / sqrt(abar_t) = y itself.)
//
//   DDIMSampler<float> s(cfg);
//   s.set_timesteps(50);
//   Tensor<float> clean = sdedit(s, model, noisy.cview(), /*sigma=*/0.5);
//
// `sampler` is a concrete sampler or an AnySampler. The entry is the sampler
// timestep whose sigma_t is closest to sigma (in log space); with sparse
// timesteps the start is approximate. The sampler must be freshly set up
// (set_timesteps), as for sample_loop.
#include <cmath>
#include <limits>
#include <span>
#include <variant>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

// sigma_t = sqrt((1 - abar_t) / abar_t): the noise level of x_t / sqrt(abar_t).
template <Scalar T>
double noise_level(const NoiseSchedule<T>& schedule, index_t t) {
  const double abar = static_cast<double>(schedule.alpha_cumprod(t));
  return std::sqrt((1.0 - abar) / abar);
}

// The position in `timesteps` whose noise level is closest to `sigma` (> 0);
// of a repeated timestep the last one (where a second-order sampler such as
// Heun starts an interval, and where its index lookup lands).
template <Scalar T>
index_t sdedit_entry_index(const NoiseSchedule<T>& schedule, std::span<const double> timesteps, double sigma) {
  require(std::isfinite(sigma) && sigma > 0, "sdedit: sigma must be finite and > 0, got ", sigma);
  require(!timesteps.empty(), "sdedit: the sampler has no timesteps; call set_timesteps(n) first");
  index_t best = 0;
  double best_dist = std::numeric_limits<double>::infinity();
  for (index_t i = 0; i < static_cast<index_t>(timesteps.size()); ++i) {
    const auto t = static_cast<index_t>(timesteps[static_cast<std::size_t>(i)]);
    const double d = std::abs(std::log(noise_level(schedule, t)) - std::log(sigma));
    if (d < best_dist || (d == best_dist && timesteps[static_cast<std::size_t>(i)] ==
                                                timesteps[static_cast<std::size_t>(best)]))
      best = i, best_dist = d;
  }
  return best;
}

// Denoises `noisy` = x_0 + sigma * noise (x_0 in the model's data space):
// enters the reverse process at the matching timestep and runs the
// sampler's remaining steps. `model` and `progress` are as for sample_loop
// (progress sees (i, n, t) over the steps actually run).
template <Sampler S, class Model, class Progress = NoProgress>
  requires ModelFor<Model, typename S::scalar_type>
Tensor<typename S::scalar_type> sdedit(S& sampler, Model&& model, ConstTensorView<typename S::scalar_type> noisy,
                                       double sigma, const NoiseSource<typename S::scalar_type>& noise = {},
                                       Progress&& progress = {}) {
  using T = typename S::scalar_type;
  const auto timesteps = std::span<const double>(sampler.timesteps());
  const index_t first = sdedit_entry_index(sampler.schedule(), timesteps, sigma);
  const auto t0 = static_cast<index_t>(timesteps[static_cast<std::size_t>(first)]);
  // x_t = sqrt(abar_t) y, or y itself for a sampler whose x_t is x_0 + sigma_t n (Euler).
  const double abar = static_cast<double>(sampler.schedule().alpha_cumprod(t0));
  const T scale = variance_exploding<S> ? T(1) : static_cast<T>(std::sqrt(abar));
  Tensor<T> x(noisy.shape());
  for (index_t i = 0; i < x.numel(); ++i) x[i] = scale * noisy[i];
  detail::run_steps(sampler, model, x, first, noise, progress, "sdedit");
  return x;
}

// The same with a sampler chosen at run time.
template <SamplerVariant V, class Model, class Progress = NoProgress>
  requires ModelFor<Model, variant_scalar_t<V>>
Tensor<variant_scalar_t<V>> sdedit(V& sampler, Model&& model, ConstTensorView<variant_scalar_t<V>> noisy, double sigma,
                                   const NoiseSource<variant_scalar_t<V>>& noise = {}, Progress&& progress = {}) {
  return std::visit([&](auto& s) { return sdedit(s, model, noisy, sigma, noise, progress); }, sampler);
}

}  // namespace ddpm
