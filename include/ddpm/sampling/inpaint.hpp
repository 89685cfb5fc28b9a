#pragma once
// Inpainting with an unconditionally trained model: RePaint (Lugmayr et al.
// 2022, Algorithm 1), as a loop around an ordinary sampler and model.
//
// At each step t -> s the known pixels are taken from the forward process of
// the known image, the unknown ones from the reverse step:
//   x_s = mask * (sqrt(abar_s) x_known + sqrt(1 - abar_s) z) + (1 - mask) * step(model(x_t), t, x_t)
// and, `resample` - 1 times per step, x_s is pushed back to t with the
// forward jump x_t = sqrt(abar_t / abar_s) x_s + sqrt(1 - abar_t / abar_s) z
// and the step is redone, which lets the generated part agree with the
// known part (the paper's resampling with jump length 1).
//
//   DDPMSampler<float> s(cfg);
//   s.set_timesteps(50);
//   Tensor<float> filled = repaint(s, model, image.cview(), mask.cview(), noise.cview(), rng, {.resample = 5});
//
// mask: 1 where the pixel is known (kept), 0 where it is generated; the same
// shape as the image, or one sample's shape (shared by the batch). The
// sampler must be stateless between steps with a previous_timestep(t):
// DDPMSampler or DDIMSampler, or an AnySampler holding one.
#include <cmath>
#include <concepts>
#include <span>
#include <type_traits>
#include <variant>

#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

struct RePaintConfig {
  index_t resample = 5;  // U in the paper: evaluations per step (1: no resampling)

  void validate() const { require(resample >= 1, "RePaint: resample must be >= 1, got ", resample); }
};

template <class S>
concept SteppedSampler = Sampler<S> && requires(const S& s, double t) {
  { s.previous_timestep(t) } -> std::convertible_to<index_t>;
  s.schedule().alpha_cumprod(index_t{0});
};

// Fills the pixels where mask == 0. `initial_noise` is x_T (N(0, I)); `rng`
// draws the sampler's noise and the forward-process noise.
template <SteppedSampler S, class Model, class Progress = NoProgress>
  requires ModelFor<Model, typename S::scalar_type>
Tensor<typename S::scalar_type> repaint(S& sampler, Model&& model, ConstTensorView<typename S::scalar_type> known,
                                        ConstTensorView<typename S::scalar_type> mask,
                                        ConstTensorView<typename S::scalar_type> initial_noise, Rng& rng,
                                        const RePaintConfig& config = {}, Progress&& progress = {}) {
  using T = typename S::scalar_type;
  config.validate();
  require_same_shape(known.shape(), initial_noise.shape(), "repaint: known image vs initial noise");
  const index_t per = known.rank() > 0 && known.dim(0) > 0 ? known.numel() / known.dim(0) : 0;
  require(mask.numel() == known.numel() || mask.numel() == per, "repaint: mask ", mask.shape().str(),
          " must have the image's shape ", known.shape().str(), " or one sample's");
  for (index_t i = 0; i < mask.numel(); ++i)
    require(mask[i] >= T(0) && mask[i] <= T(1), "repaint: mask values must be in [0, 1], got ", mask[i]);
  const auto timesteps = std::span<const double>(sampler.timesteps());
  require(!timesteps.empty(), "repaint: the sampler has no timesteps; call set_timesteps(n) first");
  const auto& schedule = sampler.schedule();
  const NoiseSource<T> noise(rng);
  const auto mask_at = [&](index_t i) { return mask.numel() == known.numel() ? mask[i] : mask[i % per]; };

  Tensor<T> x = detail::initial_sample(sampler, initial_noise), z(known.shape());
  const auto n = static_cast<index_t>(timesteps.size());
  for (index_t k = 0; k < n; ++k) {
    const double t = timesteps[static_cast<std::size_t>(k)];
    const index_t s = sampler.previous_timestep(t);
    const double abar_t = static_cast<double>(schedule.alpha_cumprod(static_cast<index_t>(t)));
    const double abar_s = s >= 0 ? static_cast<double>(schedule.alpha_cumprod(s)) : 1.0;
    for (index_t u = 0; u < config.resample; ++u) {
      const StepOutput<T> r = detail::model_step(sampler, model, x.cview(), k, t, noise, "repaint");
      // Known part from the forward process at s, unknown part from the step.
      rng.fill_normal(z.span());
      const T a = static_cast<T>(std::sqrt(abar_s)), b = static_cast<T>(std::sqrt(1.0 - abar_s));
      for (index_t i = 0; i < x.numel(); ++i) {
        const T w = mask_at(i);
        x[i] = w * (a * known[i] + b * z[i]) + (T(1) - w) * r.prev_sample[i];
      }
      if (u + 1 < config.resample && s >= 0) {
        // Back to t: q(x_t | x_s).
        rng.fill_normal(z.span());
        const T c = static_cast<T>(std::sqrt(abar_t / abar_s)), d = static_cast<T>(std::sqrt(1.0 - abar_t / abar_s));
        for (index_t i = 0; i < x.numel(); ++i) x[i] = c * x[i] + d * z[i];
      } else {
        break;
      }
    }
    detail::report_progress<T>(progress, k, n, t, x.cview());
  }
  return x;
}

// The same with a sampler chosen at run time; one without previous_timestep
// (DPM-Solver, Euler: their steps depend on earlier ones) is an error.
template <SamplerVariant V, class Model, class Progress = NoProgress>
  requires ModelFor<Model, variant_scalar_t<V>>
Tensor<variant_scalar_t<V>> repaint(V& sampler, Model&& model, ConstTensorView<variant_scalar_t<V>> known,
                                    ConstTensorView<variant_scalar_t<V>> mask,
                                    ConstTensorView<variant_scalar_t<V>> initial_noise, Rng& rng,
                                    const RePaintConfig& config = {}, Progress&& progress = {}) {
  return std::visit(
      [&](auto& s) -> Tensor<variant_scalar_t<V>> {
        if constexpr (SteppedSampler<std::decay_t<decltype(s)>>)
          return repaint(s, model, known, mask, initial_noise, rng, config, progress);
        else
          fail("repaint: RePaint needs a sampler whose step from t depends on t alone (previous_timestep(t)), as "
               "DDPM and DDIM; this one's steps depend on earlier ones");
      },
      sampler);
}

}  // namespace ddpm
