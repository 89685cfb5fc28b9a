#pragma once
// DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for
// Guided Sampling of Diffusion Probabilistic Models"), orders 1 and 2, as
// diffusers' DPMSolverMultistepScheduler with algorithm_type "dpmsolver++".
//
// In lambda = log(alpha_t / sigma_t), with the data prediction x_0 = m and
// h = lambda_t - lambda_s:
//   order 1 (= DDIM):      x_t = sigma_t / sigma_s x_s - alpha_t (e^-h - 1) m_s
//   order 2 (Alg. 2, 2M):  D1 = (m_s0 - m_s1) / r0, r0 = h_prev / h;
//     midpoint: x_t = sigma_t / sigma_s0 x - alpha_t (e^-h - 1) (D0 + D1 / 2)
//     heun:     x_t = sigma_t / sigma_s0 x - alpha_t (e^-h - 1) D0 + alpha_t ((e^-h - 1) / h + 1) D1
// The first step is first order (no history); so is the last one when the
// final sigma is 0, with euler_at_final, or with lower_order_final and < 15 steps.
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

struct DPMSolverConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;
  int solver_order = 2;  // 1 or 2
  DPMSolverType solver_type = DPMSolverType::midpoint;
  bool lower_order_final = true;
  bool euler_at_final = false;
  FinalSigmasType final_sigmas_type = FinalSigmasType::zero;
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  SampleClipping clipping;  // thresholding only (DPM-Solver has no static clipping)
  TimestepConfig timesteps{TimestepSpacing::linspace, 0};
};

template <Scalar T>
class DPMSolverSampler : public detail::SigmaSampler<T> {
  using Base = detail::SigmaSampler<T>;

 public:
  explicit DPMSolverSampler(const DPMSolverConfig& config = {})
      : Base(config.schedule, config.final_sigmas_type), config_(config) {
    require(config.solver_order == 1 || config.solver_order == 2, "solver_order: must be 1 or 2, got ",
            config.solver_order);
    require(!config.clipping.clip_sample, "clip_sample: DPMSolverMultistepScheduler has no static clipping");
    require(!std::isnan(config.lambda_min_clipped), "lambda_min_clipped: must not be NaN");
    config.clipping.validate();
  }

  const DPMSolverConfig& config() const { return config_; }
  T init_noise_sigma() const { return T(1); }
  ConstTensorView<T> scale_model_input(ConstTensorView<T> x, double) const { return x; }

  void set_timesteps(index_t num_inference_steps) {
    const index_t n_train = this->schedule_.num_train_timesteps();
    this->assign(dpm_solver_timesteps(n_train, num_inference_steps, config_.timesteps, n_train - clipped_count()));
    lower_order_nums_ = 0;
  }

  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "DPM-Solver step: model_output vs sample");
    const index_t i = this->index_at(timestep);
    const auto n = static_cast<index_t>(this->timesteps_.size());
    const bool last = i == n - 1;
    const bool lower_order_final =
        last && (config_.euler_at_final || (config_.lower_order_final && n < 15) ||
                 config_.final_sigmas_type == FinalSigmasType::zero);

    // The data prediction x_0 at sigma_i; the previous one is kept as history.
    std::swap(m_prev_, m_cur_);
    const AlphaSigma<T> s0 = alpha_sigma_from_sigma(this->sigma(i));
    TensorView<T> m0 = detail::buffer_like(m_cur_, sample.shape());
    detail::clipped_original_sample(config_.prediction_type, config_.clipping, s0.alpha, s0.sigma, model_output,
                                    sample, m0, scratch_);

    TensorView<T> out = detail::buffer_like(prev_, sample.shape());
    if (config_.solver_order == 1 || lower_order_nums_ < 1 || lower_order_final)
      first_order(i, sample, m0, out);
    else
      second_order(i, sample, m0, m_prev_.view(), out);
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

  void first_order(index_t i, ConstTensorView<T> x, ConstTensorView<T> m0, TensorView<T> out) const {
    const AlphaSigma<T> t = alpha_sigma_from_sigma(this->sigma(i + 1)), s = alpha_sigma_from_sigma(this->sigma(i));
    const T h = t.lambda() - s.lambda();
    const T cx = t.sigma / s.sigma, cm = t.alpha * (std::exp(-h) - T(1));
    for (index_t k = 0; k < out.numel(); ++k) out[k] = cx * x[k] - cm * m0[k];
  }

  void second_order(index_t i, ConstTensorView<T> x, ConstTensorView<T> m0, ConstTensorView<T> m1,
                    TensorView<T> out) const {
    const AlphaSigma<T> t = alpha_sigma_from_sigma(this->sigma(i + 1));
    const AlphaSigma<T> s0 = alpha_sigma_from_sigma(this->sigma(i)), s1 = alpha_sigma_from_sigma(this->sigma(i - 1));
    const T lambda_s0 = s0.lambda();
    const T h = t.lambda() - lambda_s0, h0 = lambda_s0 - s1.lambda();
    const T r0 = h0 / h, inv_r0 = T(1) / r0;
    const T cx = t.sigma / s0.sigma, em1 = std::exp(-h) - T(1), c0 = t.alpha * em1;
    const T c1 = config_.solver_type == DPMSolverType::midpoint ? T(0.5) * c0 : -(t.alpha * (em1 / h + T(1)));
    for (index_t k = 0; k < out.numel(); ++k) {
      const T d1 = inv_r0 * (m0[k] - m1[k]);
      out[k] = cx * x[k] - c0 * m0[k] - c1 * d1;
    }
  }

  DPMSolverConfig config_;
  int lower_order_nums_ = 0;
  Tensor<T> m_cur_, m_prev_, prev_;
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
    int algorithm = 0;
    k.choice("algorithm_type", algorithm, {{"dpmsolver++", 0}, {"deis", 0}},
             "\"dpmsolver++\" (the only DPM-Solver variant ddpm implements)");
    k.integer("solver_order", c.solver_order, 1, 2, "1 or 2 (third order is not implemented)");
    k.choice("solver_type", c.solver_type,
             {{"midpoint", DPMSolverType::midpoint}, {"heun", DPMSolverType::heun}, {"logrho", DPMSolverType::midpoint},
              {"bh1", DPMSolverType::midpoint}, {"bh2", DPMSolverType::midpoint}},
             "midpoint or heun");
    k("lower_order_final", c.lower_order_final);
    k("euler_at_final", c.euler_at_final);
    k.enumeration("final_sigmas_type", c.final_sigmas_type, parse_final_sigmas_type);
    k("lambda_min_clipped", c.lambda_min_clipped);
    k.clipping(c.clipping, /*with_static_clipping=*/false);
    for (const char* key : {"use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas", "use_beta_sigmas",
                            "use_flow_sigmas", "use_dynamic_shifting"})
      k.require_value(key, false, "interpolated sigmas are the only ones implemented");
    k.require_value("variance_type", nullptr, "learned variances are not implemented");
    // Only read with flow sigmas or dynamic shifting, both rejected above.
    k.ignore({"flow_shift", "time_shift_type"});
  }
};

}  // namespace ddpm
