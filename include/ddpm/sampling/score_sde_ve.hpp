#pragma once
// The variance-exploding SDE sampler of Song et al. 2021 ("Score-based
// generative modeling through stochastic differential equations"), as
// diffusers' ScoreSdeVeScheduler: a score model s(x, sigma) ~ grad_x log p_sigma(x)
// of x = x_0 + sigma n, sigma(t) = sigma_min (sigma_max / sigma_min)^t.
//
//   set_timesteps(n)  timesteps = linspace(1, sampling_eps, n)
//   set_sigmas(n)     sigmas[i] = sigma_min (sigma_max / sigma_min)^timesteps[i]   (what the model sees)
//                     discrete_sigmas = exp(linspace(log sigma_min, log sigma_max, n))  (ascending)
//   step_pred         reverse diffusion predictor (eq. 47 / algorithm 2 of the paper): with
//                     j = floor(t (n - 1)), s = discrete_sigmas[j], s' = discrete_sigmas[j - 1] (0 at j = 0),
//                     g = sqrt(s^2 - s'^2):  x_mean = x + g^2 score,  x' = x_mean + g z
//   step_correct      one annealed Langevin step (sampling/langevin.hpp) with the config's snr
//
// Both draw one N(0, I) tensor per call from the NoiseSource. The whole
// predictor-corrector loop is score_sde_ve_sample (sampling/
// predictor_corrector.hpp). The arithmetic is in T, as diffusers' in its
// dtype: float32 timesteps and sigmas in a float run, double in a double run.
// scheduler_config.json: io/score_sde_ve_config.hpp.
#include <cmath>
#include <span>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/numerics.hpp"
#include "ddpm/sampling/langevin.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

struct ScoreSdeVeConfig {
  index_t num_train_timesteps = 2000;  // diffusers' __len__; no effect on the numerics
  double snr = 0.15;                   // of the Langevin corrector
  double sigma_min = 0.01;
  double sigma_max = 1348.0;
  double sampling_eps = 1e-5;  // the last timestep (t runs from 1 down to it)
  index_t correct_steps = 1;   // Langevin steps before each predictor step

  void validate() const {
    require(num_train_timesteps >= 1, "num_train_timesteps: must be >= 1, got ", num_train_timesteps);
    require(std::isfinite(snr) && snr > 0, "snr: must be finite and > 0, got ", snr);
    require(std::isfinite(sigma_min) && sigma_min > 0, "sigma_min: must be finite and > 0, got ", sigma_min);
    require(std::isfinite(sigma_max) && sigma_max > sigma_min, "sigma_max: must be finite and > sigma_min (", sigma_min,
            "), got ", sigma_max);
    require(std::isfinite(sampling_eps) && sampling_eps > 0 && sampling_eps < 1,
            "sampling_eps: must be in (0, 1), got ", sampling_eps);
    require(correct_steps >= 0, "correct_steps: must be >= 0, got ", correct_steps);
  }
};

// step_pred's results; views into the scheduler's buffers, valid until its next step.
template <Scalar T>
struct SdeVeOutput {
  ConstTensorView<T> prev_sample;
  ConstTensorView<T> prev_sample_mean;
};

template <Scalar T>
class ScoreSdeVeScheduler {
 public:
  using scalar_type = T;

  explicit ScoreSdeVeScheduler(const ScoreSdeVeConfig& config = {}) : config_(config) { config_.validate(); }

  const ScoreSdeVeConfig& config() const { return config_; }
  T init_noise_sigma() const { return static_cast<T>(config_.sigma_max); }

  std::span<const T> timesteps() const { return timesteps_; }
  std::span<const T> sigmas() const { return sigmas_; }
  std::span<const T> discrete_sigmas() const { return discrete_sigmas_; }

  void set_timesteps(index_t num_inference_steps) {
    require(num_inference_steps >= 2, "ScoreSdeVe: num_inference_steps must be >= 2, got ", num_inference_steps);
    timesteps_ = numerics::torch_linspace<T>(1.0, config_.sampling_eps, num_inference_steps);
    sigmas_.clear();
    discrete_sigmas_.clear();
  }

  // The sigmas of the timesteps (set_timesteps(n) first if not done).
  void set_sigmas(index_t num_inference_steps) {
    if (timesteps_.size() != static_cast<std::size_t>(num_inference_steps)) set_timesteps(num_inference_steps);
    discrete_sigmas_ = numerics::torch_linspace<T>(std::log(config_.sigma_min), std::log(config_.sigma_max),
                                                   num_inference_steps);
    for (T& s : discrete_sigmas_) s = std::exp(s);
    // sigma_min * (sigma_max / sigma_min) ** t: a Python float times a T power of T.
    const T ratio = static_cast<T>(config_.sigma_max / config_.sigma_min), lo = static_cast<T>(config_.sigma_min);
    sigmas_.clear();
    for (T t : timesteps_) sigmas_.push_back(lo * std::pow(ratio, t));
  }

  // The index j = floor(t (n - 1)) into discrete_sigmas that step_pred uses at t (computed in T).
  index_t discrete_sigma_index(double timestep) const {
    require(!discrete_sigmas_.empty(), "ScoreSdeVe: call set_sigmas(n) before stepping");
    const T scaled = static_cast<T>(timestep) * static_cast<T>(timesteps_.size() - 1);
    const auto j = static_cast<index_t>(scaled);  // .long(): truncation
    require(j >= 0 && j < static_cast<index_t>(discrete_sigmas_.size()), "ScoreSdeVe step_pred: timestep ", timestep,
            " is outside [0, 1]");
    return j;
  }

  // Reverse diffusion predictor from `sample` at `timestep` (one of timesteps()).
  SdeVeOutput<T> step_pred(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                           const NoiseSource<T>& noise = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "ScoreSdeVe step_pred: model_output vs sample");
    const index_t j = discrete_sigma_index(timestep);
    const T s = discrete_sigmas_[static_cast<std::size_t>(j)];
    const T s_prev = j == 0 ? T(0) : discrete_sigmas_[static_cast<std::size_t>(j - 1)];
    const T g = std::sqrt(s * s - s_prev * s_prev), g2 = g * g;
    TensorView<T> z = detail::buffer_like(noise_, sample.shape()), mean = detail::buffer_like(mean_, sample.shape()),
                  out = detail::buffer_like(prev_, sample.shape());
    noise.draw(z);
    for (index_t k = 0; k < out.numel(); ++k) {
      mean[k] = sample[k] + g2 * model_output[k];  // x - drift, drift = -g^2 score
      out[k] = mean[k] + g * z[k];
    }
    return {out, mean};
  }

  // One Langevin corrector step at the current noise level; returns prev_sample.
  ConstTensorView<T> step_correct(ConstTensorView<T> model_output, ConstTensorView<T> sample,
                                  const NoiseSource<T>& noise = {}) {
    require(!timesteps_.empty(), "ScoreSdeVe: call set_timesteps(n) before step_correct()");
    require_same_shape(model_output.shape(), sample.shape(), "ScoreSdeVe step_correct: model_output vs sample");
    TensorView<T> z = detail::buffer_like(noise_, sample.shape()), out = detail::buffer_like(prev_, sample.shape());
    noise.draw(z);
    const T step = langevin_step_size<T>(model_output, noise_.cview(), config_.snr);
    langevin_update<T>(sample, model_output, noise_.cview(), step, out);
    return out;
  }

 private:
  ScoreSdeVeConfig config_;
  std::vector<T> timesteps_, sigmas_, discrete_sigmas_;
  Tensor<T> noise_, mean_, prev_;
};

// scheduler_config.json keys (diffusers' names) for io/score_sde_ve_config.hpp,
// in the Keys interface of SamplerTraits (sampling/sampler.hpp). ScoreSdeVe is
// not one of the registered samplers: its loop (score model, predictor and
// corrector) is not sample_loop's.
struct ScoreSdeVeKeys {
  static constexpr std::string_view class_name = "ScoreSdeVeScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, ScoreSdeVeConfig& c) {
    k.integer("num_train_timesteps", c.num_train_timesteps, 1);
    k("snr", c.snr);
    k("sigma_min", c.sigma_min);
    k("sigma_max", c.sigma_max);
    k("sampling_eps", c.sampling_eps);
    k.integer("correct_steps", c.correct_steps, 0);
  }
};

}  // namespace ddpm
