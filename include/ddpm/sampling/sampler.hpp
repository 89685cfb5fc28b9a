#pragma once
// What every sampler offers (DDPM, DDIM, DPM-Solver++, Euler), so that one
// sampling loop and any model callable serve all of them:
//
//   set_timesteps(n)              choose n timesteps from the training schedule
//   timesteps()                   the timesteps to visit, in order
//   init_noise_sigma()            x_T = N(0, I) * init_noise_sigma
//   scale_model_input(x, t)       what the model sees at t
//   step(model_output, t, x, noise) -> StepOutput{prev_sample, pred_original_sample}
//
// Stochastic steps draw N(0, I) from a NoiseSource: a ddpm::Rng, a tensor the
// caller supplies (reference data, reproducing another implementation), or
// any callable that fills a tensor.
#include <algorithm>
#include <concepts>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel_random.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/thresholding.hpp"
#include "ddpm/diffusion/timesteps.hpp"

namespace ddpm {

// A step's results. The views point into the sampler's buffers and stay valid
// until its next step (so the loop allocates nothing per step).
template <Scalar T>
struct StepOutput {
  ConstTensorView<T> prev_sample;
  ConstTensorView<T> pred_original_sample;
};

// Where a stochastic step gets its N(0, I) draws.
template <Scalar T>
class NoiseSource {
 public:
  using Fill = std::function<void(TensorView<T>)>;

  NoiseSource() = default;  // none: a step that needs noise throws
  NoiseSource(Rng& rng) : rng_(&rng) {}
  // Draws on `pool` (core/parallel_random.hpp): the same numbers, sooner.
  NoiseSource(Rng& rng, ThreadPool& pool) : rng_(&rng), pool_(&pool) {}
  NoiseSource(ConstTensorView<T> noise) : given_(noise), has_given_(true) {}
  explicit NoiseSource(Fill fill) : fill_(std::move(fill)) {}

  bool empty() const { return !rng_ && !has_given_ && !fill_; }

  // Fills `out` with N(0, 1) values.
  void draw(TensorView<T> out) const {
    if (rng_ && pool_) {
      fill_normal(*rng_, out.span(), *pool_);
    } else if (rng_) {
      rng_->fill_normal(out.span());
    } else if (has_given_) {
      require_same_shape(given_.shape(), out.shape(), "variance noise vs sample");
      std::copy(given_.begin(), given_.end(), out.begin());
    } else if (fill_) {
      fill_(out);
    } else {
      fail("variance noise: this step is stochastic; pass a ddpm::Rng or the noise tensor to step()");
    }
  }

 private:
  Rng* rng_ = nullptr;
  ThreadPool* pool_ = nullptr;
  ConstTensorView<T> given_;
  bool has_given_ = false;
  Fill fill_;
};

// A sampler's registration: specialised once, in the sampler's own header,
// beside the class and its config; sampling/registry.hpp lists the samplers.
//
//   template <> struct SamplerTraits<DDIMSampler> {
//     using config_type = DDIMConfig;                  // what DDIMSampler<T>(config) takes
//     static constexpr std::string_view name = "ddim";  // the command-line name (--sampler)
//     static constexpr std::string_view aliases[] = {...};       // optional: other accepted names
//     static constexpr std::string_view class_name = "DDIMScheduler";  // diffusers' _class_name
//     // The scheduler_config.json keys, in diffusers' names (see below).
//     template <class Keys> static void scheduler_config(Keys& k, DDIMConfig& c);
//     // Optional: options that are keyword arguments of diffusers' step().
//     template <class Keys> static void step_kwargs(Keys& k, DDIMConfig& c);
//   };
//
// `Keys` maps a config field to a JSON key in both directions (reading,
// writing: io/scheduler_config.hpp), so the two cannot disagree. It offers
//   k(key, field)                          bool or double
//   k.integer(key, field, min[, max, expected])
//   k.integers(key, field, min)            a std::vector of integers (a JSON list)
//   k.enumeration(key, field, parse)       an enum with to_string and parse_*
//   k.choice(key, field, {{"name", value}, ...}, expected)  several names may map to one value;
//                                          the first name of a value is the one written
//   k.schedule(c.schedule), k.timesteps(c.timesteps), k.prediction(c.prediction_type[, allow_original_sample]),
//   k.clipping(c.clipping[, with_static_clipping])   the key groups several schedulers share
//   k.require_value(key, supported, why)   a key implemented for one value only (false, "linear", nullptr)
//   k.ignore({keys...})                    keys that cannot change the numerics as configured
//   k.reject(key, value, expected)         [[noreturn]] for checks across keys
// A key the traits do not mention is an error when read. Missing keys keep
// the config's default member values, which are diffusers' defaults.
//
// A sampler that runs from data toward noise (DDIM inversion) says so with
//   static constexpr SamplerDirection direction = SamplerDirection::to_noise;
// generating front ends (an example's `sample --sampler`) list only the others.
template <template <class> class S>
struct SamplerTraits;

enum class SamplerDirection { to_data, to_noise };

// to_data unless the traits say otherwise.
template <class Traits>
constexpr SamplerDirection sampler_direction() {
  if constexpr (requires { Traits::direction; })
    return Traits::direction;
  else
    return SamplerDirection::to_data;
}

template <class S>
concept Sampler = requires(S& s, const S& cs, index_t n, ConstTensorView<typename S::scalar_type> x, double t,
                           const NoiseSource<typename S::scalar_type>& noise) {
  typename S::scalar_type;
  s.set_timesteps(n);
  { cs.timesteps() } -> std::convertible_to<std::span<const double>>;
  { cs.init_noise_sigma() } -> std::convertible_to<typename S::scalar_type>;
  { s.scale_model_input(x, t) } -> std::convertible_to<ConstTensorView<typename S::scalar_type>>;
  { s.step(x, t, x, noise) } -> std::same_as<StepOutput<typename S::scalar_type>>;
};

// use_karras_sigmas / use_exponential_sigmas, as one SigmaSpacing (both true
// is an error, as in diffusers); for a sampler's SamplerTraits.
template <class Keys>
void sigma_spacing_keys(Keys& k, SigmaSpacing& spacing) {
  bool karras = spacing == SigmaSpacing::karras, exponential = spacing == SigmaSpacing::exponential;
  k("use_karras_sigmas", karras);
  k("use_exponential_sigmas", exponential);
  if (karras && exponential)
    k.reject("use_exponential_sigmas", "true", "false when use_karras_sigmas is true (one sigma spacing at a time)");
  spacing = karras ? SigmaSpacing::karras : exponential ? SigmaSpacing::exponential : SigmaSpacing::interpolated;
}

// Whether S's samples are x_0 + sigma_t n (variance exploding, as Euler's:
// S::variance_exploding) rather than sqrt(abar_t) x_0 + sqrt(1 - abar_t) n.
template <class S>
constexpr bool variance_exploding = requires {
  requires S::variance_exploding;
};

namespace detail {

// Sizes a step buffer like `like` (no allocation once it has been that large).
template <Scalar T>
TensorView<T> buffer_like(Tensor<T>& buf, const Shape& like) {
  if (!(buf.shape() == like)) buf.resize(like);
  return buf.view();
}

// The first position of `t` in `timesteps`.
inline index_t index_for_first(std::span<const double> timesteps, double t) {
  const auto it = std::find(timesteps.begin(), timesteps.end(), t);
  require(it != timesteps.end(), "timestep: ", t, " is not one of the sampler's timesteps");
  return static_cast<index_t>(it - timesteps.begin());
}

// The position of `t` in `timesteps` (diffusers' index_for_timestep: the
// second match when a timestep repeats, so img2img starting mid-way works).
inline index_t index_for_timestep(std::span<const double> timesteps, double t) {
  index_t first = -1;
  for (index_t i = 0; i < static_cast<index_t>(timesteps.size()); ++i) {
    if (timesteps[static_cast<std::size_t>(i)] != t) continue;
    if (first >= 0) return i;
    first = i;
  }
  require(first >= 0, "timestep: ", t, " is not one of the sampler's timesteps (call set_timesteps first)");
  return first;
}

// x_0 from the model output, then clipped or thresholded: the part of a step
// DDPM, DDIM and DPM-Solver++ share. Writes into `x0`.
template <Scalar T>
void clipped_original_sample(PredictionType type, const SampleClipping& clipping, T a, T b,
                             ConstTensorView<T> model_output, ConstTensorView<T> sample, TensorView<T> x0,
                             std::vector<T>& scratch) {
  predict_original_sample(type, a, b, model_output, sample, x0);
  clip_or_threshold(clipping, x0, scratch);
}

// What DDPM and DDIM share: a schedule indexed by integer timesteps, timesteps
// spaced by `timestep_spacing`, no input scaling, x_T ~ N(0, I).
template <Scalar T>
class DiscreteTimeSampler {
 public:
  using scalar_type = T;

  const NoiseSchedule<T>& schedule() const { return schedule_; }
  std::span<const double> timesteps() const { return timesteps_; }
  index_t num_inference_steps() const { return num_inference_steps_; }
  T init_noise_sigma() const { return T(1); }
  ConstTensorView<T> scale_model_input(ConstTensorView<T> x, double) const { return x; }

  void set_timesteps(index_t num_inference_steps) {
    timesteps_ = spaced_timesteps(schedule_.num_train_timesteps(), num_inference_steps, timestep_config_);
    num_inference_steps_ = num_inference_steps;
  }

 protected:
  DiscreteTimeSampler(const ScheduleConfig& schedule, const TimestepConfig& timesteps, const SampleClipping& clipping)
      : schedule_(schedule), timestep_config_(timesteps) {
    clipping.validate();
    require(timesteps.steps_offset >= 0, "steps_offset: must be >= 0, got ", timesteps.steps_offset);
    // Before set_timesteps: the full chain T-1, ..., 0.
    for (index_t t = schedule_.num_train_timesteps() - 1; t >= 0; --t) timesteps_.push_back(static_cast<double>(t));
  }

  index_t checked_timestep(double t) const { return discrete_timestep(t, schedule_.num_train_timesteps()); }

  NoiseSchedule<T> schedule_;
  TimestepConfig timestep_config_;
  std::vector<double> timesteps_;
  index_t num_inference_steps_ = 0;  // 0 until set_timesteps
  Tensor<T> x0_, prev_, noise_;
  std::vector<T> scratch_;
};

// What DPM-Solver and Euler share: sigmas interpolated at the timesteps
// (zero-SNR schedules get alphas_cumprod[-1] = 2^-24 so sigma stays finite),
// and a step index found from the first timestep and then counted.
template <Scalar T>
class SigmaSampler {
 public:
  using scalar_type = T;

  const NoiseSchedule<T>& schedule() const { return schedule_; }
  std::span<const double> timesteps() const { return timesteps_; }
  // n + 1 values, the last one after the final step.
  std::span<const T> sigmas() const { return sigmas_; }
  // The index of the next step (-1 until the first step or scale_model_input).
  index_t step_index() const { return step_index_; }

 protected:
  SigmaSampler(const ScheduleConfig& schedule, FinalSigmasType final_sigmas) : schedule_(schedule), final_(final_sigmas) {
    schedule_.clamp_terminal_alpha_cumprod();
  }

  // The spaced timesteps and their sigmas; Karras / exponential sigmas
  // replace the timesteps by theirs (sigmas.hpp: spaced_sigmas).
  void assign(std::vector<double> timesteps, SigmaSpacing spacing = SigmaSpacing::interpolated,
              SigmaTimesteps rounding = SigmaTimesteps::float32, SigmaRange range = SigmaRange::spaced_timesteps) {
    sigmas_ = spaced_sigmas(schedule_, timesteps, spacing, final_, rounding, range);
    timesteps_ = std::move(timesteps);
    step_index_ = -1;
  }

  // The index of the step at `t`: looked up the first time, then counted.
  index_t index_at(double t) {
    require(!timesteps_.empty(), "step: call set_timesteps(n) before step()");
    if (step_index_ < 0) step_index_ = index_for_timestep(timesteps_, t);
    require(step_index_ < static_cast<index_t>(timesteps_.size()), "step: all ", timesteps_.size(),
            " steps are done; call set_timesteps(n) to sample again");
    return step_index_;
  }
  T sigma(index_t i) const { return sigmas_[static_cast<std::size_t>(i)]; }

  NoiseSchedule<T> schedule_;
  FinalSigmasType final_;
  std::vector<double> timesteps_;
  std::vector<T> sigmas_;
  index_t step_index_ = -1;
};

// What the k-diffusion family (Euler, Euler ancestral, Heun, KDPM2) shares
// on top of SigmaSampler (Karras et al. 2022, EDM section 2): samples are
// x_0 + sigma n, so x_T = N(0, I) * sigma_max (sqrt(sigma_max^2 + 1) with
// leading spacing, diffusers' choice) and the model sees
// c_in(sigma) x = x / sqrt(sigma^2 + 1), the variance-preserving input it was
// trained on.
template <Scalar T>
class VarianceExplodingSampler : public SigmaSampler<T> {
 public:
  static constexpr bool variance_exploding = true;

  T init_noise_sigma() const {
    require(!this->sigmas_.empty(), "init_noise_sigma: call set_timesteps(n) first");
    const T m = *std::max_element(this->sigmas_.begin(), this->sigmas_.end());
    return spacing_ == TimestepSpacing::leading ? std::sqrt(m * m + T(1)) : m;
  }

  // The input at the sigma of timestep t (KDPM2's midpoint calls use
  // scale_to_unit_variance with their own sigma).
  ConstTensorView<T> scale_model_input(ConstTensorView<T> x, double t) {
    return scale_to_unit_variance(x, this->sigma(this->index_at(t)));
  }

 protected:
  VarianceExplodingSampler(const ScheduleConfig& schedule, FinalSigmasType final_sigmas, TimestepSpacing spacing)
      : SigmaSampler<T>(schedule, final_sigmas), spacing_(spacing) {}

  ConstTensorView<T> scale_to_unit_variance(ConstTensorView<T> x, T sigma) {
    const T c_in = std::sqrt(sigma * sigma + T(1));
    TensorView<T> out = buffer_like(scaled_, x.shape());
    for (index_t k = 0; k < out.numel(); ++k) out[k] = x[k] / c_in;
    return out;
  }

 private:
  TimestepSpacing spacing_;
  Tensor<T> scaled_;
};

}  // namespace detail

}  // namespace ddpm
