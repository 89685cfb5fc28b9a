#pragma once
// DPM-Solver-2 in k-diffusion's form (Karras et al. 2022, Algorithm 2's
// midpoint variant; k-diffusion sample_dpm_2), as diffusers'
// KDPM2DiscreteScheduler: per interval sigma_i -> sigma_{i+1}, the model is
// called at sigma_i and at the geometric midpoint
//   sigma_mid = exp(lerp(log sigma_{i+1}, log sigma_i, 1/2)):
//   1st call: d = (x - x_0) / sigma_i,       x_mid = x + d (sigma_mid - sigma_i)
//   2nd call: d' = (x_mid - x_0') / sigma_mid, x_{i+1} = x + d' (sigma_{i+1} - sigma_i)
// The last interval (to 0) is a single Euler step. timesteps() has 2n - 1
// entries: t_0, then per interval the midpoint's timestep (sigma_to_t of
// sigma_mid, fractional) and t_{i+1}. The model sees x / sqrt(s^2 + 1) with s
// the sigma of its call. The sigma arithmetic is float32, as diffusers'.
#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

struct KDPM2Config {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;  // epsilon or v_prediction
  TimestepConfig timesteps{TimestepSpacing::linspace, 0};
  SigmaSpacing sigma_spacing = SigmaSpacing::interpolated;  // use_karras_sigmas / use_exponential_sigmas
};

template <Scalar T>
class KDPM2Sampler : public detail::VarianceExplodingSampler<T> {
  using Base = detail::VarianceExplodingSampler<T>;

 public:
  explicit KDPM2Sampler(const KDPM2Config& config = {}) : Base(config.schedule, FinalSigmasType::zero, config.timesteps.spacing), config_(config) {
    require(config.prediction_type != PredictionType::sample,
            "prediction_type: KDPM2DiscreteScheduler supports epsilon or v_prediction, got sample");
    require(!config.schedule.rescale_betas_zero_snr,
            "rescale_betas_zero_snr: KDPM2DiscreteScheduler has no zero-SNR rescaling");
  }

  const KDPM2Config& config() const { return config_; }

  // sigmas(): s_0, s_1, s_1, ..., s_{n-1}, s_{n-1}, 0, 0, 0 (2n + 2 values, diffusers'
  // layout); sigmas_interpol(): the midpoints in the same layout (the first unused).
  void set_timesteps(index_t num_inference_steps) {
    this->assign(euler_timesteps(this->schedule_.num_train_timesteps(), num_inference_steps, config_.timesteps),
                 config_.sigma_spacing, SigmaTimesteps::integer);
    const std::vector<T> s = this->sigmas_;  // n + 1 values, the last 0
    const std::size_t m = s.size();
    std::vector<T> mid(m);
    for (std::size_t i = 1; i < m; ++i) {
      const float a = std::log(static_cast<float>(s[i])), b = std::log(static_cast<float>(s[i - 1]));
      mid[i] = static_cast<T>(std::exp(b - (b - a) * 0.5f));  // torch.lerp(a, b, 0.5)
    }
    mid[0] = T(0);
    std::vector<T> sig{s[0]}, sig_mid{mid[0]};
    for (std::size_t i = 1; i < m; ++i) sig.insert(sig.end(), 2, s[i]), sig_mid.insert(sig_mid.end(), 2, mid[i]);
    sig.push_back(s.back());
    sig_mid.push_back(mid.back());

    const auto table = training_sigmas(this->schedule_);
    std::vector<double> log_sigmas;
    for (double v : table) log_sigmas.push_back(static_cast<double>(std::log(static_cast<T>(v))));
    std::vector<double> ts{this->timesteps_.front()};
    for (std::size_t i = 1; i < this->timesteps_.size(); ++i) {
      ts.push_back(static_cast<float>(sigma_to_t(static_cast<double>(mid[i]), log_sigmas)));
      ts.push_back(this->timesteps_[i]);
    }
    this->sigmas_ = std::move(sig);
    sigmas_interpol_ = std::move(sig_mid);
    this->timesteps_ = std::move(ts);
    first_order_ = true;
  }

  std::span<const T> sigmas_interpol() const { return sigmas_interpol_; }
  bool state_in_first_order() const { return first_order_; }

  // The midpoint call of an interval sees the input at the midpoint sigma.
  ConstTensorView<T> scale_model_input(ConstTensorView<T> x, double t) {
    const index_t i = this->index_at(t);
    return this->scale_to_unit_variance(x, first_order_ ? this->sigma(i) : sigmas_interpol_[static_cast<std::size_t>(i)]);
  }

  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "KDPM2 step: model_output vs sample");
    const index_t i = this->index_at(timestep);
    if (!first_order_) require_same_shape(x_.shape(), sample.shape(), "KDPM2 step: sample vs the interval's first call");
    const auto at = [&](index_t j) { return sigmas_interpol_[static_cast<std::size_t>(j)]; };
    const T sigma = first_order_ ? this->sigma(i) : this->sigma(i - 1);
    const T sigma_mid = first_order_ ? at(i + 1) : at(i);
    const T sigma_next = first_order_ ? this->sigma(i + 1) : this->sigma(i);
    const T sigma_input = first_order_ ? sigma : sigma_mid;
    TensorView<T> x0 = detail::buffer_like(x0_, sample.shape());
    predict_original_sample_ve(config_.prediction_type, sigma_input, model_output, sample, x0);
    const T dt = static_cast<T>(static_cast<float>(first_order_ ? sigma_mid : sigma_next) - static_cast<float>(sigma));
    TensorView<T> out = detail::buffer_like(prev_, sample.shape());
    if (first_order_) {
      TensorView<T> x = detail::buffer_like(x_, sample.shape());
      for (index_t k = 0; k < out.numel(); ++k) {
        x[k] = sample[k];
        out[k] = sample[k] + ((sample[k] - x0[k]) / sigma) * dt;
      }
    } else {
      for (index_t k = 0; k < out.numel(); ++k) out[k] = x_[k] + ((sample[k] - x0[k]) / sigma_mid) * dt;
    }
    first_order_ = !first_order_;
    ++this->step_index_;
    return {out, x0};
  }

 private:
  KDPM2Config config_;
  bool first_order_ = true;
  std::vector<T> sigmas_interpol_;
  Tensor<T> x0_, prev_, x_;
};

template <>
struct SamplerTraits<KDPM2Sampler> {
  using config_type = KDPM2Config;
  static constexpr std::string_view name = "kdpm2";
  static constexpr std::string_view class_name = "KDPM2DiscreteScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, KDPM2Config& c) {
    k.schedule(c.schedule);
    if (c.schedule.rescale_betas_zero_snr)
      k.reject("rescale_betas_zero_snr", "true", "false (KDPM2DiscreteScheduler has no zero-SNR rescaling)");
    k.prediction(c.prediction_type);
    if (c.prediction_type == PredictionType::sample)
      k.reject("prediction_type", "sample", "epsilon or v_prediction (diffusers' KDPM2 has no sample prediction)");
    k.timesteps(c.timesteps);
    sigma_spacing_keys(k, c.sigma_spacing);
    k.require_value("use_beta_sigmas", false, "beta sigmas are not implemented");
  }
};

}  // namespace ddpm
