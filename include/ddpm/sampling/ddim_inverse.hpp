#pragma once
// DDIM inversion (Song et al. 2021, eq. 12 run forward in time; Mokady et al.
// 2023), as diffusers' DDIMInverseScheduler: the deterministic DDIM update
// from a clean sample toward noise, timesteps ascending. At step t, with
// s = t - T // n (the current level; alpha at s < 0 is initial_alpha_cumprod,
// 1 with set_alpha_to_one) and t the target level:
//   x_0 = (x - sqrt(1 - abar_s) eps) / sqrt(abar_s)   (clipped with clip_sample)
//   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
// with eps the model's noise prediction (not re-derived after clipping, as in
// diffusers). The model is called as model(x, t) with the target t.
// No noise is drawn; init_noise_sigma is 1 and the model input is unscaled.
#include <algorithm>
#include <cmath>
#include <span>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

struct DDIMInverseConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;
  bool clip_sample = true;  // clamps x_0 to [-clip_sample_range, clip_sample_range]
  double clip_sample_range = 1.0;
  TimestepConfig timesteps;  // leading or trailing (diffusers has no linspace here)
  bool set_alpha_to_one = true;
};

template <Scalar T>
class DDIMInverseSampler {
 public:
  using scalar_type = T;

  explicit DDIMInverseSampler(const DDIMInverseConfig& config = {}) : schedule_(config.schedule), config_(config) {
    require(config.timesteps.spacing != TimestepSpacing::linspace,
            "timestep_spacing: DDIMInverseScheduler supports leading or trailing, got linspace");
    require(config.timesteps.steps_offset >= 0, "steps_offset: must be >= 0, got ", config.timesteps.steps_offset);
    require(config.clip_sample_range > 0, "clip_sample_range: must be > 0, got ", config.clip_sample_range);
    initial_alpha_cumprod_ = config.set_alpha_to_one ? T(1) : schedule_.alpha_cumprod(0);
    for (index_t t = 0; t < schedule_.num_train_timesteps(); ++t) timesteps_.push_back(static_cast<double>(t));
  }

  const DDIMInverseConfig& config() const { return config_; }
  const NoiseSchedule<T>& schedule() const { return schedule_; }
  std::span<const double> timesteps() const { return timesteps_; }
  T init_noise_sigma() const { return T(1); }
  ConstTensorView<T> scale_model_input(ConstTensorView<T> x, double) const { return x; }

  // Ascending: leading (arange(n) * (T // n) + steps_offset) or trailing
  // (round(arange(T, 0, -T / n))[::-1] - 1).
  void set_timesteps(index_t num_inference_steps) {
    auto t = spaced_timesteps(schedule_.num_train_timesteps(), num_inference_steps, config_.timesteps);
    std::reverse(t.begin(), t.end());
    timesteps_ = std::move(t);
    num_inference_steps_ = num_inference_steps;
  }

  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& = {}) {
    require(num_inference_steps_ > 0, "DDIM inverse step: call set_timesteps(n) before step()");
    require_same_shape(model_output.shape(), sample.shape(), "DDIM inverse step: model_output vs sample");
    const index_t n_train = schedule_.num_train_timesteps();
    const index_t target = discrete_timestep(timestep, n_train);
    const index_t current = std::min(target - n_train / num_inference_steps_, n_train - 1);
    const T a_s = current >= 0 ? schedule_.alpha_cumprod(current) : initial_alpha_cumprod_;
    const T a_t = schedule_.alpha_cumprod(target);
    const T sa = std::sqrt(a_s), sb = std::sqrt(T(1) - a_s), ta = std::sqrt(a_t), tb = std::sqrt(T(1) - a_t);
    const auto r = static_cast<T>(config_.clip_sample_range);
    TensorView<T> x0 = detail::buffer_like(x0_, sample.shape()), out = detail::buffer_like(prev_, sample.shape());
    for (index_t k = 0; k < out.numel(); ++k) {
      const T m = model_output[k], x = sample[k];
      T orig, eps;
      switch (config_.prediction_type) {
        case PredictionType::epsilon: orig = (x - sb * m) / sa, eps = m; break;
        case PredictionType::sample: orig = m, eps = (x - sa * m) / sb; break;
        case PredictionType::v_prediction: orig = sa * x - sb * m, eps = sa * m + sb * x; break;
        default: fail("DDIM inverse step: unknown prediction type");
      }
      if (config_.clip_sample) orig = std::clamp(orig, -r, r);
      x0[k] = orig;
      out[k] = ta * orig + tb * eps;
    }
    return {out, x0};
  }

 private:
  NoiseSchedule<T> schedule_;
  DDIMInverseConfig config_;
  T initial_alpha_cumprod_ = T(1);
  std::vector<double> timesteps_;
  index_t num_inference_steps_ = 0;
  Tensor<T> x0_, prev_;
};

template <>
struct SamplerTraits<DDIMInverseSampler> {
  using config_type = DDIMInverseConfig;
  static constexpr std::string_view name = "ddim-inverse";
  static constexpr std::string_view class_name = "DDIMInverseScheduler";
  static constexpr SamplerDirection direction = SamplerDirection::to_noise;

  template <class Keys>
  static void scheduler_config(Keys& k, DDIMInverseConfig& c) {
    k.schedule(c.schedule);
    k.prediction(c.prediction_type);
    k("clip_sample", c.clip_sample);
    k("clip_sample_range", c.clip_sample_range);
    k.timesteps(c.timesteps);
    if (c.timesteps.spacing == TimestepSpacing::linspace)
      k.reject("timestep_spacing", "linspace", "leading or trailing (DDIMInverseScheduler has no linspace)");
    k("set_alpha_to_one", c.set_alpha_to_one);
  }
};

}  // namespace ddpm
