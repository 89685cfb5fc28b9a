#pragma once
// Denoising diffusion implicit models (Song et al. 2021), as diffusers'
// DDIMScheduler. From t to s = t - T / n (always, whatever the spacing):
//   x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s - sigma^2) eps + sigma z     (eq. 12)
//   sigma = eta * sqrt((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s))  (eq. 16)
// eta = 0 is the deterministic DDIM, eta = 1 the DDPM posterior. A negative s
// uses the final alpha-bar: 1 with set_alpha_to_one, else alphas_cumprod[0].
#include <algorithm>
#include <cmath>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/thresholding.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

struct DDIMConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;
  SampleClipping clipping{.clip_sample = true};
  TimestepConfig timesteps;  // leading, steps_offset 0
  bool set_alpha_to_one = true;
  // Step options (arguments of diffusers' step()).
  double eta = 0.0;
  bool use_clipped_model_output = false;  // re-derive eps from the clipped x_0 (as Glide does)
};

template <Scalar T>
class DDIMSampler : public detail::DiscreteTimeSampler<T> {
  using Base = detail::DiscreteTimeSampler<T>;

 public:
  explicit DDIMSampler(const DDIMConfig& config = {})
      : Base(config.schedule, config.timesteps, config.clipping), config_(config) {
    require(std::isfinite(config.eta) && config.eta >= 0, "eta: must be finite and >= 0, got ", config.eta);
    final_alpha_cumprod_ = config.set_alpha_to_one ? T(1) : this->schedule_.alpha_cumprod(0);
  }

  const DDIMConfig& config() const { return config_; }
  void set_eta(double eta) {
    require(std::isfinite(eta) && eta >= 0, "eta: must be finite and >= 0, got ", eta);
    config_.eta = eta;
  }

  // s = t - T // n; needs set_timesteps.
  index_t previous_timestep(double t) const {
    require(this->num_inference_steps_ > 0, "DDIM step: call set_timesteps(n) before step()");
    return this->checked_timestep(t) - this->schedule_.num_train_timesteps() / this->num_inference_steps_;
  }

  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& noise = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "DDIM step: model_output vs sample");
    const index_t t = this->checked_timestep(timestep);
    const index_t prev = previous_timestep(timestep);
    const T abar_t = this->schedule_.alpha_cumprod(t);
    const T abar_prev = this->schedule_.alpha_cumprod_or(prev, final_alpha_cumprod_);
    const T beta_prod_t = T(1) - abar_t, beta_prod_prev = T(1) - abar_prev;
    const T a = std::sqrt(abar_t), b = std::sqrt(beta_prod_t);

    TensorView<T> x0 = detail::buffer_like(this->x0_, sample.shape());
    TensorView<T> eps = detail::buffer_like(eps_, sample.shape());
    predict_original_sample(config_.prediction_type, a, b, model_output, sample, x0);
    predict_epsilon(config_.prediction_type, a, b, model_output, sample, ConstTensorView<T>(x0), eps);
    clip_or_threshold(config_.clipping, x0, this->scratch_);
    if (config_.use_clipped_model_output) epsilon_from_original_sample(a, b, sample, ConstTensorView<T>(x0), eps);

    // Eq. 16 and eq. 12. 1 - abar_s - sigma^2 is 0 up to rounding for eta = 1 at a
    // zero-SNR t; clamped at 0 (diffusers' float64 run takes sqrt of -1e-17 there: NaN).
    const T variance = (beta_prod_prev / beta_prod_t) * (T(1) - abar_t / abar_prev);
    const T std = static_cast<T>(config_.eta) * std::sqrt(variance);
    const T direction = std::sqrt(std::max(T(1) - abar_prev - std * std, T(0)));
    const T sqrt_abar_prev = std::sqrt(abar_prev);
    TensorView<T> out = detail::buffer_like(this->prev_, sample.shape());
    for (index_t i = 0; i < out.numel(); ++i) out[i] = sqrt_abar_prev * x0[i] + direction * eps[i];
    if (config_.eta > 0) {
      TensorView<T> z = detail::buffer_like(this->noise_, sample.shape());
      noise.draw(z);
      for (index_t i = 0; i < out.numel(); ++i) out[i] = out[i] + std * z[i];
    }
    return {out, x0};
  }

 private:
  DDIMConfig config_;
  T final_alpha_cumprod_ = T(1);
  Tensor<T> eps_;
};

template <>
struct SamplerTraits<DDIMSampler> {
  using config_type = DDIMConfig;
  static constexpr std::string_view name = "ddim";
  static constexpr std::string_view class_name = "DDIMScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, DDIMConfig& c) {
    k.schedule(c.schedule);
    k.prediction(c.prediction_type);
    k.clipping(c.clipping);
    k.timesteps(c.timesteps);
    k("set_alpha_to_one", c.set_alpha_to_one);
  }
  template <class Keys>
  static void step_kwargs(Keys& k, DDIMConfig& c) {
    k("eta", c.eta);
    k("use_clipped_model_output", c.use_clipped_model_output);
  }
};

}  // namespace ddpm
