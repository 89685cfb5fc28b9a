#pragma once
// Euler ancestral sampling (Karras et al. 2022's "Euler a", k-diffusion's
// sample_euler_ancestral), as diffusers' EulerAncestralDiscreteScheduler: an
// Euler step down to sigma_down, then fresh noise of std sigma_up, so that the
// marginal at sigma_to is kept (sigma_down^2 + sigma_up^2 = sigma_to^2):
//   sigma_up   = sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2)
//   sigma_down = sqrt(sigma_to^2 - sigma_up^2)
//   x_next = x + (x - x_0) / sigma (sigma_down - sigma) + sigma_up z
// One N(0, I) draw per step, the last one too (where sigma_up = 0). The model
// sees x / sqrt(sigma^2 + 1). diffusers does the sigma arithmetic on its
// float32 sigmas in both precisions; so does this class.
#include <algorithm>
#include <cmath>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

struct EulerAncestralConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;  // epsilon or v_prediction
  TimestepConfig timesteps{TimestepSpacing::linspace, 0};
};

template <Scalar T>
class EulerAncestralSampler : public detail::VarianceExplodingSampler<T> {
  using Base = detail::VarianceExplodingSampler<T>;

 public:
  explicit EulerAncestralSampler(const EulerAncestralConfig& config = {})
      : Base(config.schedule, FinalSigmasType::zero, config.timesteps.spacing), config_(config) {
    require(config.prediction_type != PredictionType::sample,
            "prediction_type: EulerAncestralDiscreteScheduler supports epsilon or v_prediction, got sample");
    require(config.timesteps.steps_offset >= 0, "steps_offset: must be >= 0, got ", config.timesteps.steps_offset);
  }

  const EulerAncestralConfig& config() const { return config_; }


  void set_timesteps(index_t num_inference_steps) {
    this->assign(euler_timesteps(this->schedule_.num_train_timesteps(), num_inference_steps, config_.timesteps));
  }



  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& noise = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "Euler ancestral step: model_output vs sample");
    const index_t i = this->index_at(timestep);
    // float32 scalars, as diffusers' 0-d sigma tensors (float32 in both precisions).
    const auto from = static_cast<float>(this->sigma(i)), to = static_cast<float>(this->sigma(i + 1));
    const float up_f = std::sqrt(to * to * (from * from - to * to) / (from * from));
    const float down_f = std::sqrt(std::max(to * to - up_f * up_f, 0.0f));
    const T sigma = static_cast<T>(from), dt = static_cast<T>(down_f - from), up = static_cast<T>(up_f);

    TensorView<T> x0 = detail::buffer_like(x0_, sample.shape());
    predict_original_sample_ve(config_.prediction_type, sigma, model_output, sample, x0);
    TensorView<T> z = detail::buffer_like(noise_, sample.shape());
    noise.draw(z);
    TensorView<T> out = detail::buffer_like(prev_, sample.shape());
    for (index_t k = 0; k < out.numel(); ++k) {
      const T moved = sample[k] + ((sample[k] - x0[k]) / sigma) * dt;
      out[k] = moved + z[k] * up;
    }
    ++this->step_index_;
    return {out, x0};
  }

 private:
  EulerAncestralConfig config_;
  Tensor<T> x0_, prev_, noise_;
};

template <>
struct SamplerTraits<EulerAncestralSampler> {
  using config_type = EulerAncestralConfig;
  static constexpr std::string_view name = "euler-a";
  static constexpr std::string_view aliases[] = {"euler_a", "euler-ancestral"};
  static constexpr std::string_view class_name = "EulerAncestralDiscreteScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, EulerAncestralConfig& c) {
    k.schedule(c.schedule);
    k.prediction(c.prediction_type);
    if (c.prediction_type == PredictionType::sample)
      k.reject("prediction_type", "sample", "epsilon or v_prediction (diffusers' EulerAncestral has no sample prediction)");
    k.timesteps(c.timesteps);
  }
};

}  // namespace ddpm
