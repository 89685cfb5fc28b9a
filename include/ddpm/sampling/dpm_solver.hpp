#pragma once
// DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for
// Guided Sampling of Diffusion Probabilistic Models"), orders 1 to 3, and its
// SDE variant, as diffusers' DPMSolverMultistepScheduler with algorithm_type
// "dpmsolver++" or "sde-dpmsolver++"; interpolated, Karras or exponential sigmas.
//
// In lambda = log(alpha_t / sigma_t), with the data prediction x_0 = m and
// h = lambda_t - lambda_s:
//   order 1 (= DDIM):      x_t = sigma_t / sigma_s x_s - alpha_t (e^-h - 1) m_s
//   order 2 (Alg. 2, 2M):  D1 = (m_s0 - m_s1) / r0, r0 = h_prev / h;
//     midpoint: x_t = sigma_t / sigma_s0 x - alpha_t (e^-h - 1) (D0 + D1 / 2)
//     heun:     x_t = sigma_t / sigma_s0 x - alpha_t (e^-h - 1) D0 + alpha_t ((e^-h - 1) / h + 1) D1
//   order 3 (3M):  r0 = h_0 / h, r1 = h_1 / h, D1_0 = (m_s0 - m_s1) / r0, D1_1 = (m_s1 - m_s2) / r1,
//     D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1) / (r0 + r1);
//     x_t = sigma_t / sigma_s0 x - alpha_t (e^-h - 1) D0 + alpha_t ((e^-h - 1) / h + 1) D1
//           - alpha_t ((e^-h - 1 + h) / h^2 - 1 / 2) D2
//   sde-dpmsolver++ (orders 1, 2; one N(0, I) draw z per step):
//     x_t = sigma_t / sigma_s e^-h x + alpha_t (1 - e^-2h) D0 [+ c D1] + sigma_t sqrt(1 - e^-2h) z,
//     c = alpha_t (1 - e^-2h) / 2 (midpoint) or alpha_t ((1 - e^-2h) / (-2h) + 1) (heun)
// The first step is first order (no history), the second at most second
// order; the last one is first order when the final sigma is 0, with
// euler_at_final, or with lower_order_final and < 15 steps (then the one
// before it is at most second order).
#include <cmath>
#include <limits>
#include <string_view>
#include <utility>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/thresholding.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

enum class DPMSolverType { midpoint, heun };
enum class DPMSolverAlgorithm { dpmsolver_pp, sde_dpmsolver_pp };

struct DPMSolverConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;
  DPMSolverAlgorithm algorithm_type = DPMSolverAlgorithm::dpmsolver_pp;
  int solver_order = 2;  // 1, 2 or 3 (3 with dpmsolver++ only)
  DPMSolverType solver_type = DPMSolverType::midpoint;
  bool lower_order_final = true;
  bool euler_at_final = false;
  FinalSigmasType final_sigmas_type = FinalSigmasType::zero;
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  SampleClipping clipping;  // thresholding only (DPM-Solver has no static clipping)
  TimestepConfig timesteps{TimestepSpacing::linspace, 0};
  // use_karras_sigmas / use_exponential_sigmas: ends are the training schedule's.
  SigmaSpacing sigma_spacing = SigmaSpacing::interpolated;
};

template <Scalar T>
class DPMSolverSampler : public detail::SigmaSampler<T> {
  using Base = detail::SigmaSampler<T>;

 public:
  explicit DPMSolverSampler(const DPMSolverConfig& config = {})
      : Base(config.schedule, config.final_sigmas_type), config_(config) {
    require(config.solver_order >= 1 && config.solver_order <= 3, "solver_order: must be 1, 2 or 3, got ",
            config.solver_order);
    require(config.solver_order < 3 || config.algorithm_type == DPMSolverAlgorithm::dpmsolver_pp,
            "solver_order: 3 is implemented for algorithm_type dpmsolver++ only, not sde-dpmsolver++");
    require(!config.clipping.clip_sample, "clip_sample: DPMSolverMultistepScheduler has no static clipping");
    require(!std::isnan(config.lambda_min_clipped), "lambda_min_clipped: must not be NaN");
    config.clipping.validate();
  }

  const DPMSolverConfig& config() const { return config_; }
  T init_noise_sigma() const { return T(1); }
  ConstTensorView<T> scale_model_input(ConstTensorView<T> x, double) const { return x; }

  void set_timesteps(index_t num_inference_steps) {
    const index_t n_train = this->schedule_.num_train_timesteps();
    const SigmaTimesteps rounding = this->schedule_.config().beta_schedule == BetaSchedule::squaredcos_cap_v2
                                        ? SigmaTimesteps::truncated
                                        : SigmaTimesteps::integer;
    this->assign(dpm_solver_timesteps(n_train, num_inference_steps, config_.timesteps, n_train - clipped_count()),
                 config_.sigma_spacing, rounding, SigmaRange::training_schedule);
    lower_order_nums_ = 0;
  }

  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& noise = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "DPM-Solver step: model_output vs sample");
    const index_t i = this->index_at(timestep);
    const auto n = static_cast<index_t>(this->timesteps_.size());
    const bool last = i == n - 1;
    const bool lower_order_final =
        last && (config_.euler_at_final || (config_.lower_order_final && n < 15) ||
                 config_.final_sigmas_type == FinalSigmasType::zero);
    const bool lower_order_second = i == n - 2 && config_.lower_order_final && n < 15;
    const bool sde = config_.algorithm_type == DPMSolverAlgorithm::sde_dpmsolver_pp;

    // The data prediction x_0 at sigma_i; the previous one is kept as history.
    std::swap(m_prev2_, m_prev_);
    std::swap(m_prev_, m_cur_);
    const AlphaSigma<T> s0 = alpha_sigma_from_sigma(this->sigma(i));
    TensorView<T> m0 = detail::buffer_like(m_cur_, sample.shape());
    detail::clipped_original_sample(config_.prediction_type, config_.clipping, s0.alpha, s0.sigma, model_output,
                                    sample, m0, scratch_);

    ConstTensorView<T> z;
    if (sde) {
      TensorView<T> zz = detail::buffer_like(noise_, sample.shape());
      noise.draw(zz);
      z = zz;
    }
    TensorView<T> out = detail::buffer_like(prev_, sample.shape());
    if (config_.solver_order == 1 || lower_order_nums_ < 1 || lower_order_final)
      first_order(i, sample, m0, z, out);
    else if (config_.solver_order == 2 || lower_order_nums_ < 2 || lower_order_second)
      second_order(i, sample, m0, m_prev_.view(), z, out);
    else
      third_order(i, sample, m0, m_prev_.view(), m_prev2_.view(), out);
    lower_order_nums_ = std::min(lower_order_nums_ + 1, config_.solver_order);
    ++this->step_index_;
    return {out, m0};
  }

 private:
  // How many of the lowest-lambda training timesteps lambda_min_clipped removes
  // (torch.searchsorted on the ascending, flipped lambda table).
  index_t clipped_count() const {
    if (std::isinf(config_.lambda_min_clipped) && config_.lambda_min_clipped < 0) return 0;
    index_t count = 0;
    for (T abar : this->schedule_.alphas_cumprod()) {
      const T lambda = std::log(std::sqrt(abar)) - std::log(std::sqrt(T(1) - abar));
      if (lambda < static_cast<T>(config_.lambda_min_clipped)) ++count;
    }
    return count;
  }

  void first_order(index_t i, ConstTensorView<T> x, ConstTensorView<T> m0, ConstTensorView<T> z,
                   TensorView<T> out) const {
    const AlphaSigma<T> t = alpha_sigma_from_sigma(this->sigma(i + 1)), s = alpha_sigma_from_sigma(this->sigma(i));
    const T h = t.lambda() - s.lambda();
    if (config_.algorithm_type == DPMSolverAlgorithm::sde_dpmsolver_pp) {
      const T e2 = T(1) - std::exp(T(-2) * h);
      const T cx = t.sigma / s.sigma * std::exp(-h), cm = t.alpha * e2, cz = t.sigma * std::sqrt(e2);
      for (index_t k = 0; k < out.numel(); ++k) out[k] = cx * x[k] + cm * m0[k] + cz * z[k];
      return;
    }
    const T cx = t.sigma / s.sigma, cm = t.alpha * (std::exp(-h) - T(1));
    for (index_t k = 0; k < out.numel(); ++k) out[k] = cx * x[k] - cm * m0[k];
  }

  void second_order(index_t i, ConstTensorView<T> x, ConstTensorView<T> m0, ConstTensorView<T> m1,
                    ConstTensorView<T> z, TensorView<T> out) const {
    const AlphaSigma<T> t = alpha_sigma_from_sigma(this->sigma(i + 1));
    const AlphaSigma<T> s0 = alpha_sigma_from_sigma(this->sigma(i)), s1 = alpha_sigma_from_sigma(this->sigma(i - 1));
    const T lambda_s0 = s0.lambda();
    const T h = t.lambda() - lambda_s0, h0 = lambda_s0 - s1.lambda();
    const T r0 = h0 / h, inv_r0 = T(1) / r0;
    if (config_.algorithm_type == DPMSolverAlgorithm::sde_dpmsolver_pp) {
      const T e2 = T(1) - std::exp(T(-2) * h);
      const T cx = t.sigma / s0.sigma * std::exp(-h), c0 = t.alpha * e2, cz = t.sigma * std::sqrt(e2);
      const T c1 = config_.solver_type == DPMSolverType::midpoint ? T(0.5) * c0 : t.alpha * (e2 / (T(-2) * h) + T(1));
      for (index_t k = 0; k < out.numel(); ++k) {
        const T d1 = inv_r0 * (m0[k] - m1[k]);
        out[k] = cx * x[k] + c0 * m0[k] + c1 * d1 + cz * z[k];
      }
      return;
    }
    const T cx = t.sigma / s0.sigma, em1 = std::exp(-h) - T(1), c0 = t.alpha * em1;
    const T c1 = config_.solver_type == DPMSolverType::midpoint ? T(0.5) * c0 : -(t.alpha * (em1 / h + T(1)));
    for (index_t k = 0; k < out.numel(); ++k) {
      const T d1 = inv_r0 * (m0[k] - m1[k]);
      out[k] = cx * x[k] - c0 * m0[k] - c1 * d1;
    }
  }

  void third_order(index_t i, ConstTensorView<T> x, ConstTensorView<T> m0, ConstTensorView<T> m1,
                   ConstTensorView<T> m2, TensorView<T> out) const {
    const AlphaSigma<T> t = alpha_sigma_from_sigma(this->sigma(i + 1)), s0 = alpha_sigma_from_sigma(this->sigma(i));
    const AlphaSigma<T> s1 = alpha_sigma_from_sigma(this->sigma(i - 1)), s2 = alpha_sigma_from_sigma(this->sigma(i - 2));
    const T l_t = t.lambda(), l_s0 = s0.lambda(), l_s1 = s1.lambda(), l_s2 = s2.lambda();
    const T h = l_t - l_s0, h0 = l_s0 - l_s1, h1 = l_s1 - l_s2;
    const T r0 = h0 / h, r1 = h1 / h;
    const T em1 = std::exp(-h) - T(1);
    const T cx = t.sigma / s0.sigma, c0 = t.alpha * em1, c1 = t.alpha * (em1 / h + T(1));
    const T c2 = t.alpha * ((em1 + h) / (h * h) - T(0.5));
    const T inv_r0 = T(1) / r0, inv_r1 = T(1) / r1, w = r0 / (r0 + r1), inv_r01 = T(1) / (r0 + r1);
    for (index_t k = 0; k < out.numel(); ++k) {
      const T d1_0 = inv_r0 * (m0[k] - m1[k]), d1_1 = inv_r1 * (m1[k] - m2[k]);
      const T d1 = d1_0 + w * (d1_0 - d1_1), d2 = inv_r01 * (d1_0 - d1_1);
      out[k] = cx * x[k] - c0 * m0[k] + c1 * d1 - c2 * d2;
    }
  }

  DPMSolverConfig config_;
  int lower_order_nums_ = 0;
  Tensor<T> m_cur_, m_prev_, m_prev2_, prev_, noise_;
  std::vector<T> scratch_;
};

template <>
struct SamplerTraits<DPMSolverSampler> {
  using config_type = DPMSolverConfig;
  static constexpr std::string_view name = "dpm++";
  static constexpr std::string_view aliases[] = {"dpmsolver++", "dpm++2m", "dpm"};
  static constexpr std::string_view class_name = "DPMSolverMultistepScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, DPMSolverConfig& c) {
    k.schedule(c.schedule);
    k.prediction(c.prediction_type);
    k.timesteps(c.timesteps);
    // diffusers maps deis to dpmsolver++, and logrho / bh1 / bh2 to midpoint.
    k.choice("algorithm_type", c.algorithm_type,
             {{"dpmsolver++", DPMSolverAlgorithm::dpmsolver_pp},
              {"deis", DPMSolverAlgorithm::dpmsolver_pp},
              {"sde-dpmsolver++", DPMSolverAlgorithm::sde_dpmsolver_pp}},
             "\"dpmsolver++\" or \"sde-dpmsolver++\" (the DPM-Solver variants ddpm implements)");
    k.integer("solver_order", c.solver_order, 1, 3, "1, 2 or 3");
    if (c.solver_order == 3 && c.algorithm_type == DPMSolverAlgorithm::sde_dpmsolver_pp)
      k.reject("solver_order", "3", "1 or 2 with sde-dpmsolver++ (third order is implemented for dpmsolver++ only)");
    k.choice("solver_type", c.solver_type,
             {{"midpoint", DPMSolverType::midpoint}, {"heun", DPMSolverType::heun}, {"logrho", DPMSolverType::midpoint},
              {"bh1", DPMSolverType::midpoint}, {"bh2", DPMSolverType::midpoint}},
             "midpoint or heun");
    k("lower_order_final", c.lower_order_final);
    k("euler_at_final", c.euler_at_final);
    k.enumeration("final_sigmas_type", c.final_sigmas_type, parse_final_sigmas_type);
    k("lambda_min_clipped", c.lambda_min_clipped);
    k.clipping(c.clipping, /*with_static_clipping=*/false);
    sigma_spacing_keys(k, c.sigma_spacing);
    for (const char* key : {"use_lu_lambdas", "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"})
      k.require_value(key, false, "interpolated, Karras and exponential sigmas are the ones implemented");
    k.require_value("variance_type", nullptr, "learned variances are not implemented");
    // Only read with flow sigmas or dynamic shifting, both rejected above.
    k.ignore({"flow_shift", "time_shift_type"});
  }
};

}  // namespace ddpm
