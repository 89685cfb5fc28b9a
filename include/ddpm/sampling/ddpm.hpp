#pragma once
// Ancestral sampling of Ho et al. 2020 (DDPM), as diffusers' DDPMScheduler:
// x_0 from the model output (clipped or thresholded), the posterior mean
// mu~ = c0 * x_0 + ct * x_t (eq. 7) and, for t > 0, sigma_t * z.
// With fewer inference steps than training steps it jumps t -> s with
// beta = 1 - abar_t / abar_s, the posterior of the sub-sequence.
#include <cstdint>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/thresholding.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

struct DDPMConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;
  VarianceType variance_type = VarianceType::fixed_small;
  SampleClipping clipping{.clip_sample = true};
  TimestepConfig timesteps;  // leading, steps_offset 0
};

template <Scalar T>
class DDPMSampler : public detail::DiscreteTimeSampler<T> {
  using Base = detail::DiscreteTimeSampler<T>;

 public:
  explicit DDPMSampler(const DDPMConfig& config = {})
      : Base(config.schedule, config.timesteps, config.clipping), config_(config) {}

  const DDPMConfig& config() const { return config_; }

  // The timestep a step from t lands on: the next listed timestep once
  // set_timesteps was called (-1 after the last), t - 1 before.
  index_t previous_timestep(double t) const {
    if (this->num_inference_steps_ == 0) return this->checked_timestep(t) - 1;
    const auto ts = this->timesteps();
    const index_t i = detail::index_for_first(ts, t);
    return i + 1 < static_cast<index_t>(ts.size()) ? static_cast<index_t>(ts[static_cast<std::size_t>(i + 1)]) : -1;
  }

  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& noise = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "DDPM step: model_output vs sample");
    const index_t t = this->checked_timestep(timestep);
    const index_t prev = previous_timestep(timestep);
    const NoiseSchedule<T>& s = this->schedule_;
    const T abar_t = s.alpha_cumprod(t), abar_prev = s.alpha_cumprod_or(prev, T(1));

    TensorView<T> x0 = detail::buffer_like(this->x0_, sample.shape());
    detail::clipped_original_sample(config_.prediction_type, config_.clipping, std::sqrt(abar_t),
                                    std::sqrt(T(1) - abar_t), model_output, sample, x0, this->scratch_);

    // Eq. 7: the posterior mean, then sigma_t z for t > 0 (eq. 6 / Algorithm 2).
    const auto c = posterior_mean_coefficients(abar_t, abar_prev);
    TensorView<T> out = detail::buffer_like(this->prev_, sample.shape());
    for (index_t i = 0; i < out.numel(); ++i) out[i] = c.x0 * x0[i] + c.xt * sample[i];
    if (t > 0) {
      TensorView<T> z = detail::buffer_like(this->noise_, sample.shape());
      noise.draw(z);
      const T std = posterior_std(abar_t, abar_prev, config_.variance_type);
      for (index_t i = 0; i < out.numel(); ++i) out[i] = out[i] + std * z[i];
    }
    return {out, x0};
  }

 private:
  DDPMConfig config_;
};

template <>
struct SamplerTraits<DDPMSampler> {
  using config_type = DDPMConfig;
  static constexpr std::string_view name = "ddpm";
  static constexpr std::string_view class_name = "DDPMScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, DDPMConfig& c) {
    k.schedule(c.schedule);
    k.prediction(c.prediction_type);
    k.enumeration("variance_type", c.variance_type, parse_variance_type);
    k.clipping(c.clipping);
    k.timesteps(c.timesteps);
  }
};

}  // namespace ddpm
