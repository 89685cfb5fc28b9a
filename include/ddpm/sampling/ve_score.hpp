#pragma once
// A variance-preserving noise-prediction model of the library as the score
// model of a variance-exploding SDE, so that score_sde_ve_sample
// (sampling/predictor_corrector.hpp) runs with it.
//
// With abar_t the schedule's alphas_cumprod, x_vp = sqrt(abar) x_0 + sqrt(1 - abar) n
// is x_ve = x_vp / sqrt(abar) = x_0 + sigma n with sigma = sqrt((1 - abar) / abar)
// (Song et al. 2021, appendix B; Karras et al. 2022, table 1). So
//   score_ve(x, sigma) = -eps(x / sqrt(1 + sigma^2), t(sigma)) / sigma
// with t(sigma) the fractional training timestep of sigma: linear
// interpolation in log sigma over the training sigmas (diffusers'
// _sigma_to_t, diffusion/sigmas.hpp). v- and x_0-prediction outputs are
// converted to eps first (diffusion/prediction.hpp).
//
// The VE sigmas then range over the schedule's: ve_score_config gives a
// ScoreSdeVeConfig with sigma_min = sigma(t = 0) and sigma_max = sigma(t = T - 1)
// (for diffusers' linear betas, 0.0100 and 157.4), not ScoreSdeVe's 0.01 and 1348.
#include <cmath>
#include <span>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/score_sde_ve.hpp"

namespace ddpm {

// `base` (snr, correct_steps, sampling_eps, ...) with the sigma range of `schedule`.
template <Scalar T>
ScoreSdeVeConfig ve_score_config(const NoiseSchedule<T>& schedule, ScoreSdeVeConfig base = {}) {
  const auto table = training_sigmas(schedule);
  require(std::isfinite(table.back()) && table.front() > 0, "ve_score_config: the schedule's sigmas must be finite and > 0 "
          "(a zero-terminal-SNR schedule has sigma = inf at t = T - 1)");
  base.sigma_min = table.front();
  base.sigma_max = table.back();
  base.num_train_timesteps = schedule.num_train_timesteps();
  return base;
}

// model(x_vp, t) -> prediction, wrapped as (x_ve [B, ...], sigma [B]) -> score.
template <Scalar T, class Model>
class VeScoreFromPrediction {
 public:
  VeScoreFromPrediction(Model model, const NoiseSchedule<T>& schedule, PredictionType type = PredictionType::epsilon)
      : model_(std::move(model)), type_(type) {
    for (double s : training_sigmas(schedule)) {
      require(s > 0 && std::isfinite(s), "VeScoreFromPrediction: the schedule's sigmas must be finite and > 0");
      log_sigmas_.push_back(std::log(s));
    }
  }

  // The fractional training timestep of sigma.
  double timestep(double sigma) const { return sigma_to_t(sigma, log_sigmas_); }

  // The score at x (VE coordinates) for a batch whose elements share one sigma.
  ConstTensorView<T> operator()(ConstTensorView<T> x, std::span<const T> sigma) {
    require(x.rank() >= 1 && static_cast<std::size_t>(x.dim(0)) == sigma.size(), "VeScoreFromPrediction: ",
            sigma.size(), " sigmas for a batch of ", x.rank() >= 1 ? x.dim(0) : 0);
    const T s = sigma[0];
    for (T v : sigma)
      require(v == s, "VeScoreFromPrediction: the batch must share one sigma (got ", s, " and ", v, ")");
    require(s > T(0) && std::isfinite(s), "VeScoreFromPrediction: sigma must be finite and > 0, got ", s);
    const T c = std::sqrt(T(1) + s * s);
    TensorView<T> u = detail::buffer_like(input_, x.shape()), out = detail::buffer_like(score_, x.shape());
    for (index_t k = 0; k < x.numel(); ++k) u[k] = x[k] / c;
    const auto r = model_(input_.cview(), timestep(static_cast<double>(s)));
    const ConstTensorView<T> m = detail::as_const_view<T>(r);
    require(m.shape() == x.shape(), "VeScoreFromPrediction: model output ", m.shape().str(), " vs sample ",
            x.shape().str(), ": shapes differ");
    // a = sqrt(abar) = 1 / c, b = sqrt(1 - abar) = sigma / c.
    const T a = T(1) / c, b = s / c;
    ConstTensorView<T> x0;
    if (type_ == PredictionType::sample) x0 = m;
    predict_epsilon(type_, a, b, m, input_.cview(), x0, out);
    for (index_t k = 0; k < out.numel(); ++k) out[k] = -out[k] / s;
    return score_.cview();
  }

 private:
  Model model_;
  PredictionType type_;
  std::vector<double> log_sigmas_;
  Tensor<T> input_, score_;
};

template <Scalar T, class Model>
VeScoreFromPrediction<T, Model> ve_score_from_prediction(Model model, const NoiseSchedule<T>& schedule,
                                                         PredictionType type = PredictionType::epsilon) {
  return {std::move(model), schedule, type};
}

}  // namespace ddpm
