#pragma once
// Heun's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1
// without churn), as diffusers' HeunDiscreteScheduler: a second-order step
// that calls the model twice per interval, each call one step():
//   1st call at sigma_i:     d_i = (x - x_0) / sigma_i,  x' = x + d_i (sigma_{i+1} - sigma_i)
//   2nd call at sigma_{i+1}: d' = (x' - x_0') / sigma_{i+1},  x_{i+1} = x + (d_i + d') / 2 (sigma_{i+1} - sigma_i)
// The last interval (to sigma = 0) is a single Euler step. So timesteps() has
// 2n - 1 entries (each inner timestep twice) and the sampler keeps x, d_i and
// the step length between the two calls. The model sees x / sqrt(sigma^2 + 1).
// The step length is float32 arithmetic on the float32 sigmas, as diffusers'.
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

struct HeunConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;
  TimestepConfig timesteps{TimestepSpacing::linspace, 0};
  SigmaSpacing sigma_spacing = SigmaSpacing::interpolated;  // use_karras_sigmas / use_exponential_sigmas
  bool clip_sample = false;                                 // clamps x_0 to [-clip_sample_range, clip_sample_range]
  double clip_sample_range = 1.0;
};

template <Scalar T>
class HeunSampler : public detail::VarianceExplodingSampler<T> {
  using Base = detail::VarianceExplodingSampler<T>;

 public:
  explicit HeunSampler(const HeunConfig& config = {}) : Base(config.schedule, FinalSigmasType::zero, config.timesteps.spacing), config_(config) {
    require(!config.schedule.rescale_betas_zero_snr,
            "rescale_betas_zero_snr: HeunDiscreteScheduler has no zero-SNR rescaling");
    require(config.clip_sample_range > 0, "clip_sample_range: must be > 0, got ", config.clip_sample_range);
  }

  const HeunConfig& config() const { return config_; }

  // n intervals: sigmas s_0, s_1, s_1, ..., s_{n-1}, s_{n-1}, 0 and timesteps
  // t_0, t_1, t_1, ..., t_{n-1}, t_{n-1} (diffusers' repeat_interleave).
  void set_timesteps(index_t num_inference_steps) {
    this->assign(euler_timesteps(this->schedule_.num_train_timesteps(), num_inference_steps, config_.timesteps),
                 config_.sigma_spacing, SigmaTimesteps::float32);
    std::vector<T> sig{this->sigmas_.front()};
    for (std::size_t i = 1; i + 1 < this->sigmas_.size(); ++i) sig.insert(sig.end(), 2, this->sigmas_[i]);
    sig.push_back(this->sigmas_.back());
    std::vector<double> ts{this->timesteps_.front()};
    for (std::size_t i = 1; i < this->timesteps_.size(); ++i) ts.insert(ts.end(), 2, this->timesteps_[i]);
    this->sigmas_ = std::move(sig);
    this->timesteps_ = std::move(ts);
    first_order_ = true;
  }

  // True when the next step() is the first call of an interval.
  bool state_in_first_order() const { return first_order_; }

  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "Heun step: model_output vs sample");
    const index_t i = this->index_at(timestep);
    if (!first_order_) require_same_shape(x_.shape(), sample.shape(), "Heun step: sample vs the interval's first call");
    const T sigma = first_order_ ? this->sigma(i) : this->sigma(i - 1);
    const T sigma_next = first_order_ ? this->sigma(i + 1) : this->sigma(i);
    // x_0 at the sigma the model was called at.
    TensorView<T> x0 = detail::buffer_like(x0_, sample.shape());
    predict_original_sample_ve(config_.prediction_type, first_order_ ? sigma : sigma_next, model_output, sample, x0);
    if (config_.clip_sample) {
      const auto r = static_cast<T>(config_.clip_sample_range);
      for (T& v : x0.span()) v = std::clamp(v, -r, r);
    }

    TensorView<T> out = detail::buffer_like(prev_, sample.shape());
    if (first_order_) {
      dt_ = static_cast<T>(static_cast<float>(sigma_next) - static_cast<float>(sigma));
      TensorView<T> d = detail::buffer_like(d_, sample.shape()), x = detail::buffer_like(x_, sample.shape());
      for (index_t k = 0; k < out.numel(); ++k) {
        d[k] = (sample[k] - x0[k]) / sigma;
        x[k] = sample[k];
        out[k] = sample[k] + d[k] * dt_;
      }
    } else {
      for (index_t k = 0; k < out.numel(); ++k) {
        const T d = (d_[k] + (sample[k] - x0[k]) / sigma_next) / T(2);
        out[k] = x_[k] + d * dt_;
      }
    }
    first_order_ = !first_order_;
    ++this->step_index_;
    return {out, x0};
  }

 private:
  HeunConfig config_;
  bool first_order_ = true;
  T dt_ = T(0);
  Tensor<T> x0_, prev_, d_, x_;
};

template <>
struct SamplerTraits<HeunSampler> {
  using config_type = HeunConfig;
  static constexpr std::string_view name = "heun";
  static constexpr std::string_view class_name = "HeunDiscreteScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, HeunConfig& c) {
    k.schedule(c.schedule);
    if (c.schedule.rescale_betas_zero_snr)
      k.reject("rescale_betas_zero_snr", "true", "false (HeunDiscreteScheduler has no zero-SNR rescaling)");
    k.prediction(c.prediction_type, /*allow_original_sample=*/true);
    k.timesteps(c.timesteps);
    sigma_spacing_keys(k, c.sigma_spacing);
    k.require_value("use_beta_sigmas", false, "beta sigmas are not implemented");
    k("clip_sample", c.clip_sample);
    k("clip_sample_range", c.clip_sample_range);
  }
};

}  // namespace ddpm
