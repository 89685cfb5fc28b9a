#pragma once
// Euler's method on the probability-flow ODE in the variance-exploding
// parameterisation (Karras et al. 2022, Algorithm 2), as diffusers'
// EulerDiscreteScheduler:
//   the model sees x / sqrt(sigma^2 + 1);
//   d = (x - x_0) / sigma_hat;  x_next = x + d (sigma_next - sigma_hat)
// with optional "churn" (s_churn > 0): sigma_hat = sigma (1 + gamma) and
// x += sqrt(sigma_hat^2 - sigma^2) s_noise z before the step.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

struct EulerConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;
  TimestepConfig timesteps{TimestepSpacing::linspace, 0};
  FinalSigmasType final_sigmas_type = FinalSigmasType::zero;
  // use_karras_sigmas / use_exponential_sigmas (timesteps: float32 sigma_to_t).
  SigmaSpacing sigma_spacing = SigmaSpacing::interpolated;
  // Step options (arguments of diffusers' step()); s_churn = 0 is the plain ODE step.
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
};

template <Scalar T>
class EulerSampler : public detail::VarianceExplodingSampler<T> {
  using Base = detail::VarianceExplodingSampler<T>;

 public:
  explicit EulerSampler(const EulerConfig& config = {}) : Base(config.schedule, config.final_sigmas_type, config.timesteps.spacing), config_(config) {
    require(std::isfinite(config.s_churn) && config.s_churn >= 0, "s_churn: must be finite and >= 0, got ",
            config.s_churn);
  }

  const EulerConfig& config() const { return config_; }


  void set_timesteps(index_t num_inference_steps) {
    this->assign(euler_timesteps(this->schedule_.num_train_timesteps(), num_inference_steps, config_.timesteps),
                 config_.sigma_spacing, SigmaTimesteps::float32);
  }



  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& noise = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "Euler step: model_output vs sample");
    const index_t i = this->index_at(timestep);
    const T sigma = this->sigma(i);
    const auto n_sigmas = static_cast<double>(this->sigmas_.size());
    const double gamma = config_.s_tmin <= static_cast<double>(sigma) && static_cast<double>(sigma) <= config_.s_tmax
                             ? std::min(config_.s_churn / (n_sigmas - 1), std::numbers::sqrt2 - 1)
                             : 0.0;
    const T sigma_hat = sigma * static_cast<T>(gamma + 1);

    TensorView<T> x = detail::buffer_like(x_, sample.shape());
    std::copy(sample.begin(), sample.end(), x.begin());
    if (gamma > 0) {
      TensorView<T> z = detail::buffer_like(noise_, sample.shape());
      noise.draw(z);
      const T c = std::sqrt(sigma_hat * sigma_hat - sigma * sigma), s_noise = static_cast<T>(config_.s_noise);
      for (index_t k = 0; k < x.numel(); ++k) x[k] = x[k] + (z[k] * s_noise) * c;
    }

    // diffusers' v-prediction uses sigma, epsilon sigma_hat (equal without churn).
    TensorView<T> x0 = detail::buffer_like(x0_, sample.shape());
    const T sigma_pred = config_.prediction_type == PredictionType::v_prediction ? sigma : sigma_hat;
    predict_original_sample_ve(config_.prediction_type, sigma_pred, model_output, ConstTensorView<T>(x), x0);

    const T dt = this->sigma(i + 1) - sigma_hat;
    TensorView<T> out = detail::buffer_like(prev_, sample.shape());
    for (index_t k = 0; k < out.numel(); ++k) out[k] = x[k] + ((x[k] - x0[k]) / sigma_hat) * dt;
    ++this->step_index_;
    return {out, x0};
  }

 private:
  EulerConfig config_;
  Tensor<T> x_, x0_, prev_, noise_;
};

template <>
struct SamplerTraits<EulerSampler> {
  using config_type = EulerConfig;
  static constexpr std::string_view name = "euler";
  static constexpr std::string_view class_name = "EulerDiscreteScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, EulerConfig& c) {
    k.schedule(c.schedule);
    k.prediction(c.prediction_type, /*allow_original_sample=*/true);
    k.timesteps(c.timesteps);
    k.enumeration("final_sigmas_type", c.final_sigmas_type, parse_final_sigmas_type);
    k.require_value("interpolation_type", "linear", "log_linear is not implemented");
    sigma_spacing_keys(k, c.sigma_spacing);
    k.require_value("use_beta_sigmas", false, "beta sigmas are not implemented");
    bool continuous = false;
    k.choice("timestep_type", continuous, {{"discrete", false}, {"continuous", true}}, "\"discrete\" or \"continuous\"");
    if (continuous && c.prediction_type == PredictionType::v_prediction)
      k.reject("timestep_type", "continuous", "\"discrete\" (continuous timesteps with v_prediction are not implemented)");
    // Karras / exponential sigmas span the schedule's own ends; other bounds are not implemented.
    for (const char* key : {"sigma_min", "sigma_max"})
      k.require_value(key, nullptr, "sigma bounds other than the schedule's are not implemented");
  }
  template <class Keys>
  static void step_kwargs(Keys& k, EulerConfig& c) {
    k("s_churn", c.s_churn);
    k("s_tmin", c.s_tmin);
    k("s_tmax", c.s_tmax);
    k("s_noise", c.s_noise);
  }
};

}  // namespace ddpm
