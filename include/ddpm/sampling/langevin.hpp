#pragma once
// Langevin dynamics at a fixed noise level: the corrector of predictor-corrector
// sampling (Song & Ermon 2019, algorithm 1; Song et al. 2021, "Score-based
// generative modeling through SDEs", algorithm 5 / appendix G). One step with
// the score g = grad_x log p_t(x) and z ~ N(0, I):
//   eps_step = 2 (snr * mean_b ||z_b|| / mean_b ||g_b||)^2
//   x_mean   = x + eps_step * g
//   x'       = x_mean + sqrt(2 eps_step) * z
// ||.||_b is the L2 norm of batch element b; the means run over the batch, so
// the whole batch takes one step size (as diffusers' ScoreSdeVeScheduler
// .step_correct, which is this step: sampling/score_sde_ve.hpp).
//
// The step is equivariant under x -> c x: rescaling the coordinates by c
// scales the score by 1/c, eps_step by c^2, and the update by c. So a
// variance-exploding sampler (x_ve = x_vp / sqrt(abar)) and a
// variance-preserving one take the same step.
//
// For a noise-prediction model of the library (epsilon, v or sample
// prediction), the score of the variance-preserving x_t is
//   score(x_t, t) = -eps(x_t, t) / sqrt(1 - abar_t)                 (Song et al. 2021, eq. 40 ff.)
// LangevinCorrector runs `correct_steps` such steps at a timestep of any
// registered sampler, in that sampler's coordinates (sampling/
// predictor_corrector.hpp runs it between the sampler's steps).
#include <algorithm>
#include <cmath>
#include <concepts>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/numerics.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

// mean over the batch of the per-element L2 norms of x [B, ...], in double.
template <Scalar T>
double mean_batch_norm(ConstTensorView<T> x) {
  require(x.rank() >= 1 && x.dim(0) > 0, "Langevin step: expected a batch [B, ...], got ", x.shape().str());
  const index_t b = x.dim(0), per = x.numel() / b;
  double total = 0;
  for (index_t i = 0; i < b; ++i) {
    double sq = 0;
    for (index_t k = 0; k < per; ++k) sq += static_cast<double>(x[i * per + k]) * static_cast<double>(x[i * per + k]);
    total += static_cast<double>(static_cast<T>(std::sqrt(sq)));  // torch.norm returns T
  }
  return total / static_cast<double>(b);
}

// eps_step = 2 (snr * mean_b ||z_b|| / mean_b ||g_b||)^2, rounded to T.
template <Scalar T>
T langevin_step_size(ConstTensorView<T> score, ConstTensorView<T> noise, double snr) {
  require_same_shape(score.shape(), noise.shape(), "Langevin step: score vs noise");
  const double g = mean_batch_norm(score), z = mean_batch_norm(noise);
  require(g > 0 && std::isfinite(g), "Langevin step: the score's mean norm is ", g,
          "; the step size 2 (snr |z| / |score|)^2 needs a finite, non-zero score");
  const double r = snr * z / g;
  return static_cast<T>(2.0 * r * r);
}

// x_mean = x + step * score; out = x_mean + sqrt(2 step) z. `mean` may be
// empty (not written). `out` may alias `x`.
template <Scalar T>
void langevin_update(ConstTensorView<T> x, ConstTensorView<T> score, ConstTensorView<T> noise, T step, TensorView<T> out,
                     TensorView<T> mean = {}) {
  require_same_shape(x.shape(), score.shape(), "Langevin step: sample vs score");
  require_same_shape(x.shape(), noise.shape(), "Langevin step: sample vs noise");
  require_same_shape(x.shape(), out.shape(), "Langevin step: sample vs output");
  const T scale = std::sqrt(step * T(2));
  const bool with_mean = mean.numel() == x.numel() && mean.data() != nullptr;
  for (index_t k = 0; k < x.numel(); ++k) {
    const T m = x[k] + step * score[k];
    if (with_mean) mean[k] = m;
    out[k] = m + scale * noise[k];
  }
}

struct LangevinConfig {
  double snr = 0.15;          // signal-to-noise ratio of the step (Song et al. 2021 use 0.16 / 0.17 / 0.075)
  index_t correct_steps = 1;  // Langevin steps per noise level

  void validate() const {
    require(std::isfinite(snr) && snr > 0, "Langevin corrector: snr must be finite and > 0, got ", snr);
    require(correct_steps >= 0, "Langevin corrector: correct_steps must be >= 0, got ", correct_steps);
  }
};

// abar at a timestep of a sampler: the schedule's value at an integer
// timestep, else 1 / (1 + sigma(t)^2) with sigma interpolated linearly in t
// over the training sigmas (as diffusers' sigma samplers place fractional
// timesteps).
template <Scalar T>
T alpha_cumprod_at(const NoiseSchedule<T>& schedule, double t) {
  const index_t n = schedule.num_train_timesteps();
  require(std::isfinite(t) && t >= 0 && t <= static_cast<double>(n - 1), "Langevin corrector: timestep ", t,
          " is outside [0, ", n - 1, "]");
  if (t == std::floor(t)) return schedule.alpha_cumprod(static_cast<index_t>(t));
  const double sigma = numerics::np_interp_unit_grid(t, training_sigmas(schedule));
  return static_cast<T>(1.0 / (1.0 + sigma * sigma));
}

// Langevin steps with a noise-prediction model at a sampler's timestep.
template <Scalar T>
class LangevinCorrector {
 public:
  explicit LangevinCorrector(const LangevinConfig& config = {}) : config_(config) { config_.validate(); }

  const LangevinConfig& config() const { return config_; }

  // The score of the variance-preserving x_t (`sample`) from a model output
  // at a level with alphas_cumprod `abar`: -eps / sqrt(1 - abar).
  static void score_from_model_output(PredictionType type, T abar, ConstTensorView<T> model_output,
                                      ConstTensorView<T> sample, TensorView<T> score) {
    require(abar > T(0) && abar < T(1), "Langevin corrector: alphas_cumprod must be in (0, 1), got ", abar);
    const T a = std::sqrt(abar), b = std::sqrt(T(1) - abar);
    ConstTensorView<T> x0;
    if (type == PredictionType::sample) x0 = model_output;
    predict_epsilon(type, a, b, model_output, sample, x0, score);
    for (index_t k = 0; k < score.numel(); ++k) score[k] = -score[k] / b;
  }

  // `correct_steps` Langevin steps on x (in place) at timestep t of `sampler`,
  // whose model is `model(x_vp, t)`. A variance-exploding sampler
  // (S::variance_exploding) holds x = x_vp * sqrt(1 + sigma^2): the model sees
  // x_vp, the step is taken there and scaled back (the step is equivariant).
  template <Sampler S, class Model>
    requires std::same_as<typename S::scalar_type, T>
  void correct(const S& sampler, Model& model, TensorView<T> x, double t, const NoiseSource<T>& noise) {
    if (config_.correct_steps == 0) return;
    const T abar = alpha_cumprod_at(sampler.schedule(), t);
    const T c = variance_exploding<S> ? T(1) / std::sqrt(abar) : T(1);
    PredictionType type = PredictionType::epsilon;
    if constexpr (requires { sampler.config().prediction_type; }) type = sampler.config().prediction_type;
    TensorView<T> u = detail::buffer_like(u_, x.shape()), g = detail::buffer_like(score_, x.shape()),
                  z = detail::buffer_like(noise_, x.shape());
    for (index_t k = 0; k < x.numel(); ++k) u[k] = x[k] / c;
    for (index_t s = 0; s < config_.correct_steps; ++s) {
      const auto out = model(u_.cview(), t);
      const ConstTensorView<T> m = detail::as_const_view<T>(out);
      require(m.shape() == u.shape(), "Langevin corrector: model output ", m.shape().str(), " vs sample ",
              u.shape().str(), ": shapes differ");
      detail::check_model_output_finite(m, "Langevin corrector", s, t);
      score_from_model_output(type, abar, m, u_.cview(), g);
      noise.draw(z);
      const T step = langevin_step_size<T>(score_.cview(), noise_.cview(), config_.snr);
      langevin_update<T>(u_.cview(), score_.cview(), noise_.cview(), step, u);
    }
    for (index_t k = 0; k < x.numel(); ++k) x[k] = u[k] * c;
  }

 private:
  LangevinConfig config_;
  Tensor<T> u_, score_, noise_;
};

}  // namespace ddpm
