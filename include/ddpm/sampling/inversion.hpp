#pragma once
// DDIM inversion (Song et al. 2021, section 4.3; Mokady et al. 2023): the
// deterministic DDIM sampler (eta = 0) is the Euler discretisation of the
// probability-flow ODE, so it can be run backwards, from a clean sample x_0
// to the noise x_T that the forward DDIM run turns back into (nearly) x_0.
//
//   Tensor<float> z  = ddim_invert(model, x0.cview(), 50);       // x_0 -> x_T
//   Tensor<float> x0b = ddim_regenerate(model, z.cview(), 50);    // x_T -> ~x_0
//
// `model` is any callable (x_t, t) -> prediction, as for sample_loop
// (sampling/loop.hpp): a network, a classifier-free guidance wrapper
// (sampling/guidance.hpp) holding the labels, a closed-form test model.
//
// The contract. Both directions use one DDIMConfig (`config.ddim`: the
// schedule, prediction type, timestep spacing and offset, set_alpha_to_one,
// clipping) and the same number of steps n. With r = T // n and the forward
// DDIM timesteps t_0 > t_1 > ... > t_{n-1} (diffusers' leading or trailing
// spacing), forward step k goes from level t_k to t_k - r (alpha-bar 1 below
// 0 with set_alpha_to_one, else alphas_cumprod[0]) using eps(x_{t_k}, t_k).
// The inversion runs diffusers' DDIMInverseScheduler
// (sampling/ddim_inverse.hpp) on the mirrored configuration: its step
// n - 1 - k goes from level t_k - r up to t_k with the model called at
// timestep t_k. So the two runs visit the same levels and call the model at
// the same timesteps, and the inverse's first step (from x_0, alpha-bar 1,
// to t_{n-1}) mirrors the forward run's last. The result is x at level t_0
// (980 for 50 leading steps of 1000; 999 with trailing spacing), which is
// what the forward run starts from.
//
// Each inverse step evaluates the model at the current sample x_{t_k - r}
// instead of the unknown x_{t_k} (the usual approximation); the round-trip
// error is therefore first order in the step size: it shrinks roughly as
// 1/n. With `fixed_point_iterations` = m > 0 each inverse step is refined m
// times, x_{t_k} <- step(model(x_{t_k}, t_k), t_k, x_{t_k - r}) (the
// fixed-point inversion of Pan et al. 2023 / Garibi et al. 2024): at its fixed
// point the forward step maps x_{t_k} exactly back to x_{t_k - r}, at m more
// model evaluations per step.
//
// Exactness needs both directions to be invertible: clipping of x_0
// (config.ddim.clipping.clip_sample) loses what it clips, so it is off by
// default here (unlike DDIMConfig's own default); dynamic thresholding, eta
// > 0, use_clipped_model_output with clipping and linspace spacing (which
// DDIMInverseScheduler lacks) are refused.
#include <algorithm>
#include <span>
#include <utility>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/ddim.hpp"
#include "ddpm/sampling/ddim_inverse.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

// DDIMConfig's defaults with clipping off (sampling/inversion.hpp: clipping has no inverse).
inline DDIMConfig unclipped_ddim_config() {
  DDIMConfig c;
  c.clipping.clip_sample = false;
  return c;
}

struct DDIMInversionConfig {
  DDIMConfig ddim = unclipped_ddim_config();  // the forward DDIM run the inversion mirrors

  index_t fixed_point_iterations = 0;          // extra model calls per inverse step; 0: diffusers' inversion
  // How far toward noise the pair of runs goes, as diffusers' img2img and
  // DiffEdit `strength`: of n steps, the inversion runs the first
  // m = floor(strength * n) and stops at level t_{n-m}; the regeneration
  // runs the forward steps n - m .. n - 1 from there. 1: the whole way.
  double strength = 1.0;

  // The m of `strength` for n steps.
  index_t steps_run(index_t n) const {
    const auto m = static_cast<index_t>(strength * static_cast<double>(n));
    require(m >= 1, "DDIM inversion: strength ", strength, " of ", n, " steps runs no step; expected strength * steps >= 1");
    return std::min(m, n);
  }

  void validate() const {
    require(ddim.eta == 0, "DDIM inversion: eta must be 0 (the deterministic sampler), got ", ddim.eta);
    require(ddim.timesteps.spacing != TimestepSpacing::linspace,
            "DDIM inversion: timestep_spacing must be leading or trailing (DDIMInverseScheduler has no linspace)");
    require(!ddim.clipping.thresholding, "DDIM inversion: dynamic thresholding has no inverse; turn it off");
    require(!(ddim.clipping.clip_sample && ddim.use_clipped_model_output),
            "DDIM inversion: use_clipped_model_output with clip_sample has no inverse step");
    require(fixed_point_iterations >= 0 && fixed_point_iterations <= 100,
            "DDIM inversion: fixed_point_iterations must be in [0, 100], got ", fixed_point_iterations);
    require(strength > 0 && strength <= 1, "DDIM inversion: strength must be in (0, 1], got ", strength);
    ddim.clipping.validate();
  }
};

// The DDIMInverseScheduler configuration whose steps mirror those of `ddim`.
inline DDIMInverseConfig mirrored_inverse_config(const DDIMConfig& ddim) {
  return {.schedule = ddim.schedule,
          .prediction_type = ddim.prediction_type,
          .clip_sample = ddim.clipping.clip_sample,
          .clip_sample_range = ddim.clipping.clip_sample_range,
          .timesteps = ddim.timesteps,
          .set_alpha_to_one = ddim.set_alpha_to_one};
}

// The noise x_{t_0} that ddim_regenerate(model, ., steps, config) turns back
// into (nearly) x0; x0 in the model's data space, any shape the model takes.
// With strength < 1, the partly noised x_{t_{n-m}} instead. `progress` is as
// for sample_loop: (k, m, t[, x]) after inverse step k.
template <Scalar T, class Model, class Progress = NoProgress>
  requires ModelFor<Model, T>
Tensor<T> ddim_invert(Model&& model, ConstTensorView<T> x0, index_t steps, const DDIMInversionConfig& config = {},
                      Progress&& progress = {}) {
  config.validate();
  DDIMInverseSampler<T> inverse(mirrored_inverse_config(config.ddim));
  inverse.set_timesteps(steps);
  const index_t m = config.steps_run(steps);
  Tensor<T> x = Tensor<T>::copy_of(x0);
  const auto timesteps = std::span<const double>(inverse.timesteps());
  Tensor<T> y(x.shape());
  for (index_t k = 0; k < m; ++k) {
    const double t = timesteps[static_cast<std::size_t>(k)];
    // y = x_{t_k}: first from eps(x_{t_k - r}, t_k), then from eps(y, t_k).
    const StepOutput<T> first = detail::model_step(inverse, model, x.cview(), k, t, NoiseSource<T>{}, "ddim_invert");
    std::copy(first.prev_sample.begin(), first.prev_sample.end(), y.begin());
    for (index_t i = 0; i < config.fixed_point_iterations; ++i) {
      const auto out = model(inverse.scale_model_input(y.cview(), t), t);
      const ConstTensorView<T> eps = detail::as_const_view<T>(out);
      require(eps.shape() == y.shape(), "ddim_invert: model output ", eps.shape().str(), " vs sample ",
              y.shape().str(), ": shapes differ");
      detail::check_model_output_finite(eps, "ddim_invert", k, t);
      const StepOutput<T> r = inverse.step(eps, t, x.cview());
      std::copy(r.prev_sample.begin(), r.prev_sample.end(), y.begin());
    }
    std::swap(x, y);
    detail::report_progress<T>(progress, k, m, t, x.cview());
  }
  return x;
}

// The forward DDIM run (eta 0) from `noise` = x_{t_{n-m}} (x_{t_0} at
// strength 1), as ddim_invert's contract pairs it: DDIMSampler(config.ddim)
// with `steps` timesteps, run from step n - m on.
template <Scalar T, class Model, class Progress = NoProgress>
  requires ModelFor<Model, T>
Tensor<T> ddim_regenerate(Model&& model, ConstTensorView<T> noise, index_t steps,
                          const DDIMInversionConfig& config = {}, Progress&& progress = {}) {
  config.validate();
  DDIMSampler<T> sampler(config.ddim);
  sampler.set_timesteps(steps);
  const index_t m = config.steps_run(steps);
  Tensor<T> x = Tensor<T>::copy_of(noise);  // DDIM's init_noise_sigma is 1
  detail::run_steps(sampler, model, x, steps - m, NoiseSource<T>{}, progress, "ddim_regenerate");
  return x;
}

}  // namespace ddpm
