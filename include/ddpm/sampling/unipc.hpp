#pragma once
// UniPC multistep (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector
// Framework for Fast Sampling of Diffusion Models"), as diffusers'
// UniPCMultistepScheduler: the B(h) variants bh1 / bh2, any solver_order,
// data prediction (predict_x0) or noise prediction; interpolated, Karras or
// exponential sigmas.
//
// In lambda = log(alpha_t / sigma_t), from s0 to t with h = lambda_t - lambda_s0,
// the model output m converted to x_0 (predict_x0) or eps, and earlier outputs
// m_k at lambda_sk (k = 1 .. p - 1):
//   hh = -h (predict_x0) or h;  B(h) = hh (bh1) or e^hh - 1 (bh2)
//   r_k = (lambda_sk - lambda_s0) / h,  D_k = (m_k - m0) / r_k
//   phi_1 = e^hh - 1;  g_1 = phi_1 / hh - 1,  g_{j+1} = g_j / hh - 1 / (j + 1)!
//   b_j = g_j j! / B(h),  R_jk = r_k^(j-1)                      (Alg. 2 / eq. 8)
//   predict_x0: x_t = sigma_t / sigma_s0 x_s0 - alpha_t phi_1 m0 - alpha_t B(h) res
//   eps form:   x_t = alpha_t / alpha_s0 x_s0 - sigma_t phi_1 m0 - sigma_t B(h) res
// UniP-p (predictor, from the sample just corrected):
//   res = sum_k rho_k D_k, rho = 0.5 for p = 2, else R[:p-1, :p-1] rho = b[:p-1]
// UniC-p (corrector, applied when the model output m_t at the predicted x_t
// arrives, to the sample the previous predictor started from, with the
// previous step's order p):
//   res = sum_k rho_k D_k + rho_p (m_t - m0), rho = 0.5 for p = 1, else R rho = b
// Each step: UniC of the incoming sample (not on the first step, nor when
// step_index - 1 is listed in disable_corrector), then UniP. The order warms
// up 1, 2, ... to solver_order; with lower_order_final it is at most the
// number of steps left (diffusers applies this at any step count).
//
// Numerics as diffusers: sigmas rounded to float32; alpha, sigma, lambda and
// the small linear systems in T (diffusers' float32 0-d tensors).
// Dynamic thresholding applies to the x_0 prediction only (predict_x0), as
// in diffusers; the eps form ignores it.
#include <algorithm>
#include <cmath>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/thresholding.hpp"
#include "ddpm/diffusion/timesteps.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

// B(h) of UniPC (the paper's two choices).
enum class UniPCSolverType { bh1, bh2 };

struct UniPCConfig {
  ScheduleConfig schedule;
  PredictionType prediction_type = PredictionType::epsilon;
  int solver_order = 2;  // >= 1; the corrector raises the accuracy by one
  UniPCSolverType solver_type = UniPCSolverType::bh2;
  bool predict_x0 = true;  // the data-prediction form; false: the noise-prediction form
  bool lower_order_final = true;
  // Step indices i after which no corrector runs: step i + 1 keeps step i's
  // prediction uncorrected (diffusers' list; its step checks step_index - 1).
  std::vector<index_t> disable_corrector;
  FinalSigmasType final_sigmas_type = FinalSigmasType::zero;
  SampleClipping clipping;  // thresholding only (UniPC has no static clipping)
  TimestepConfig timesteps{TimestepSpacing::linspace, 0};
  // use_karras_sigmas / use_exponential_sigmas: ends are the training schedule's.
  SigmaSpacing sigma_spacing = SigmaSpacing::interpolated;
};

namespace detail {

// Solves the small dense system a x = b (n x n, row-major) by Gaussian
// elimination with partial pivoting (as LAPACK's gesv behind torch.linalg.solve).
template <class T>
std::vector<T> solve_small(std::vector<T> a, std::vector<T> b) {
  const std::size_t n = b.size();
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t p = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::abs(a[r * n + c]) > std::abs(a[p * n + c])) p = r;
    if (p != c) {
      for (std::size_t k = 0; k < n; ++k) std::swap(a[c * n + k], a[p * n + k]);
      std::swap(b[c], b[p]);
    }
    for (std::size_t r = c + 1; r < n; ++r) {
      const T f = a[r * n + c] / a[c * n + c];
      for (std::size_t k = c; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
      b[r] -= f * b[c];
    }
  }
  std::vector<T> x(n);
  for (std::size_t c = n; c-- > 0;) {
    T s = b[c];
    for (std::size_t k = c + 1; k < n; ++k) s -= a[c * n + k] * x[k];
    x[c] = s / a[c * n + c];
  }
  return x;
}

}  // namespace detail

template <Scalar T>
class UniPCSampler : public detail::SigmaSampler<T> {
  using Base = detail::SigmaSampler<T>;

 public:
  explicit UniPCSampler(const UniPCConfig& config = {})
      : Base(config.schedule, config.final_sigmas_type), config_(config) {
    require(config.solver_order >= 1, "solver_order: must be >= 1, got ", config.solver_order);
    require(!config.clipping.clip_sample, "clip_sample: UniPCMultistepScheduler has no static clipping");
    config.clipping.validate();
    history_.resize(static_cast<std::size_t>(config.solver_order));
  }

  const UniPCConfig& config() const { return config_; }
  T init_noise_sigma() const { return T(1); }
  ConstTensorView<T> scale_model_input(ConstTensorView<T> x, double) const { return x; }

  void set_timesteps(index_t num_inference_steps) {
    const index_t n_train = this->schedule_.num_train_timesteps();
    // Karras timesteps are rounded; exponential ones are cast to int64 (truncated).
    const SigmaTimesteps rounding =
        config_.sigma_spacing == SigmaSpacing::exponential ? SigmaTimesteps::truncated : SigmaTimesteps::integer;
    this->assign(dpm_solver_timesteps(n_train, num_inference_steps, config_.timesteps, n_train),
                 config_.sigma_spacing, rounding, SigmaRange::training_schedule);
    lower_order_nums_ = 0;
    this_order_ = 0;
    has_last_sample_ = false;
  }

  StepOutput<T> step(ConstTensorView<T> model_output, double timestep, ConstTensorView<T> sample,
                     const NoiseSource<T>& = {}) {
    require_same_shape(model_output.shape(), sample.shape(), "UniPC step: model_output vs sample");
    const index_t i = this->index_at(timestep);
    const auto n = static_cast<index_t>(this->timesteps_.size());
    const bool use_corrector = i > 0 && has_last_sample_ &&
                               std::find(config_.disable_corrector.begin(), config_.disable_corrector.end(), i - 1) ==
                                   config_.disable_corrector.end();
    if (has_last_sample_)
      require_same_shape(last_sample_.shape(), sample.shape(), "UniPC step: sample vs the previous step's");

    // The model output as x_0 (predict_x0) or eps, at sigma_i.
    const AlphaSigma<T> s = alpha_sigma_from_sigma(this->sigma(i));
    TensorView<T> m = detail::buffer_like(converted_, sample.shape());
    if (config_.predict_x0)
      detail::clipped_original_sample(config_.prediction_type, config_.clipping, s.alpha, s.sigma, model_output,
                                      sample, m, scratch_);
    else
      predict_epsilon(config_.prediction_type, s.alpha, s.sigma, model_output, sample, model_output, m);

    // UniC: correct the sample the model was evaluated at (history still ends at step i - 1).
    ConstTensorView<T> x = sample;
    if (use_corrector) {
      TensorView<T> corrected = detail::buffer_like(corrected_, sample.shape());
      const ConstTensorView<T> m_t = m;
      update(i, i - 1, this_order_, last_sample_.cview(), &m_t, corrected);
      x = corrected;
    }

    // The new output joins the history (oldest dropped).
    std::rotate(history_.begin(), history_.begin() + 1, history_.end());
    std::swap(history_.back(), converted_);

    const int order = config_.lower_order_final ? static_cast<int>(std::min<index_t>(config_.solver_order, n - i))
                                                : config_.solver_order;
    this_order_ = std::min(order, lower_order_nums_ + 1);

    // UniP from the (corrected) sample, which the next step's corrector starts
    // from. `sample` is not read after this point (it may be the previous
    // step's prev_sample, which the predictor overwrites).
    const ConstTensorView<T> x0 = original_sample(s, sample);
    TensorView<T> last = detail::buffer_like(last_sample_, sample.shape());
    std::copy(x.begin(), x.end(), last.begin());
    has_last_sample_ = true;
    TensorView<T> out = detail::buffer_like(prev_, sample.shape());
    update(i + 1, i, this_order_, last_sample_.cview(), nullptr, out);

    lower_order_nums_ = std::min(lower_order_nums_ + 1, config_.solver_order);
    ++this->step_index_;
    return {out, x0};
  }

 private:
  // The x_0 prediction of this step, for StepOutput.
  ConstTensorView<T> original_sample(const AlphaSigma<T>& s, ConstTensorView<T> sample) {
    if (config_.predict_x0) return history_.back().cview();
    TensorView<T> x0 = detail::buffer_like(x0_, sample.shape());
    predict_original_sample(PredictionType::epsilon, s.alpha, s.sigma, history_.back().cview(), sample, x0);
    return x0;
  }

  // One UniP (m_t null) or UniC (*m_t the new output) update of order p from
  // sigma index s0 to t, starting at x; history_.back() is the output at s0,
  // history_[back - k] the one at s0 - k.
  void update(index_t t_index, index_t s0_index, int p, ConstTensorView<T> x, const ConstTensorView<T>* m_t,
              TensorView<T> out) const {
    const bool corrector = m_t != nullptr;
    const AlphaSigma<T> t = alpha_sigma_from_sigma(this->sigma(t_index));
    const AlphaSigma<T> s0 = alpha_sigma_from_sigma(this->sigma(s0_index));
    const T lambda_s0 = s0.lambda();
    const T h = t.lambda() - lambda_s0;

    // r_k for the p - 1 earlier outputs, then 1 (the corrector's new point).
    std::vector<T> rks;
    for (int k = 1; k < p; ++k)
      rks.push_back((alpha_sigma_from_sigma(this->sigma(s0_index - k)).lambda() - lambda_s0) / h);
    rks.push_back(T(1));

    const T hh = config_.predict_x0 ? -h : h;
    const T h_phi_1 = std::expm1(hh);
    const T b_h = config_.solver_type == UniPCSolverType::bh1 ? hh : std::expm1(hh);
    std::vector<T> r(static_cast<std::size_t>(p * p)), b(static_cast<std::size_t>(p));
    T h_phi_k = h_phi_1 / hh - T(1), factorial = T(1);
    for (int j = 0; j < p; ++j) {
      for (int k = 0; k < p; ++k) r[static_cast<std::size_t>(j * p + k)] = std::pow(rks[static_cast<std::size_t>(k)], j);
      b[static_cast<std::size_t>(j)] = h_phi_k * factorial / b_h;
      factorial *= T(j + 2);
      h_phi_k = h_phi_k / hh - T(1) / factorial;
    }

    // rho: one weight per D_k (and, for UniC, a last one for m_t - m0).
    std::vector<T> rho;
    if (corrector) {
      rho = p == 1 ? std::vector<T>{T(0.5)} : detail::solve_small(r, b);
    } else if (p == 2) {
      rho = {T(0.5)};
    } else if (p > 2) {
      const auto q = static_cast<std::size_t>(p - 1);
      std::vector<T> r1(q * q), b1(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(q));
      for (std::size_t j = 0; j < q; ++j)
        for (std::size_t k = 0; k < q; ++k) r1[j * q + k] = r[j * static_cast<std::size_t>(p) + k];
      rho = detail::solve_small(std::move(r1), std::move(b1));
    }

    const T c_x = config_.predict_x0 ? t.sigma / s0.sigma : t.alpha / s0.alpha;
    const T scale = config_.predict_x0 ? t.alpha : t.sigma;
    const T c_m = scale * h_phi_1, c_res = scale * b_h;
    const ConstTensorView<T> m0 = history_.back().cview();
    const index_t last = static_cast<index_t>(history_.size()) - 1;
    for (index_t e = 0; e < out.numel(); ++e) {
      T res = T(0);
      for (int k = 1; k < p; ++k) {
        const T mk = history_[static_cast<std::size_t>(last - k)][e];
        res += rho[static_cast<std::size_t>(k - 1)] * ((mk - m0[e]) / rks[static_cast<std::size_t>(k - 1)]);
      }
      if (corrector) res += rho.back() * ((*m_t)[e] - m0[e]);
      out[e] = c_x * x[e] - c_m * m0[e] - c_res * res;
    }
  }

  UniPCConfig config_;
  int lower_order_nums_ = 0;
  int this_order_ = 0;  // the last predictor's order, which the next corrector uses
  bool has_last_sample_ = false;
  std::vector<Tensor<T>> history_;  // converted outputs, oldest first; back() is the newest
  Tensor<T> converted_, corrected_, last_sample_, prev_, x0_;
  std::vector<T> scratch_;
};

template <>
struct SamplerTraits<UniPCSampler> {
  using config_type = UniPCConfig;
  static constexpr std::string_view name = "unipc";
  static constexpr std::string_view class_name = "UniPCMultistepScheduler";

  template <class Keys>
  static void scheduler_config(Keys& k, UniPCConfig& c) {
    k.schedule(c.schedule);
    k.prediction(c.prediction_type);
    k.timesteps(c.timesteps);
    k.integer("solver_order", c.solver_order, 1, 1000, "an integer >= 1");
    // diffusers maps midpoint / heun / logrho (DPM-Solver's names) to bh2.
    k.choice("solver_type", c.solver_type,
             {{"bh2", UniPCSolverType::bh2}, {"bh1", UniPCSolverType::bh1}, {"midpoint", UniPCSolverType::bh2},
              {"heun", UniPCSolverType::bh2}, {"logrho", UniPCSolverType::bh2}},
             "bh1 or bh2");
    k("predict_x0", c.predict_x0);
    k("lower_order_final", c.lower_order_final);
    k.integers("disable_corrector", c.disable_corrector, 0);
    k.enumeration("final_sigmas_type", c.final_sigmas_type, parse_final_sigmas_type);
    k.clipping(c.clipping, /*with_static_clipping=*/false);
    sigma_spacing_keys(k, c.sigma_spacing);
    for (const char* key : {"use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"})
      k.require_value(key, false, "interpolated, Karras and exponential sigmas are the ones implemented");
    k.require_value("solver_p", nullptr, "another scheduler as UniPC's predictor is not implemented");
    // Karras / exponential sigmas span the schedule's own ends; other bounds are not implemented.
    for (const char* key : {"sigma_min", "sigma_max"})
      k.require_value(key, nullptr, "sigma bounds other than the schedule's are not implemented");
    k.require_value("shift_terminal", nullptr, "flow sigmas are not implemented");
    // Only read with flow sigmas or dynamic shifting, both rejected above.
    k.ignore({"flow_shift", "time_shift_type"});
  }
};

}  // namespace ddpm
