#pragma once
// Predictor-corrector sampling (Song et al. 2021, algorithms 2-3): a
// predictor step of the reverse process, then Langevin corrector steps at the
// new noise level (sampling/langevin.hpp).
//
// score_sde_ve_sample: diffusers' ScoreSdeVePipeline with a score model
//   model(x [B, ...], sigma [B]) -> score [B, ...]:
//     x = initial_noise * sigma_max
//     for i, t in timesteps:  sigma = sigmas[i] for every batch element
//       correct_steps times:  x = step_correct(model(x, sigma), x)
//       x, x_mean = step_pred(model(x, sigma), t, x)
//     return x_mean of the last step (unclamped)
//   set_sigmas(n) must have been called.
//
// sample_loop_pc: sample_loop (sampling/loop.hpp) of any registered sampler
// and a noise-prediction model(x, t), with `correct_steps` Langevin steps at
// the new timestep after every predictor step but the last (second-order
// samplers: after each complete step, never between its two model calls).
// Multistep samplers (DPM-Solver++) keep the model outputs of the samples
// before correction in their history, so the corrector's moves enter their
// extrapolation amplified; with them the corrector runs but does not carry
// the guarantees it has with one-step samplers (tests/sampling/
// test_predictor_corrector.cpp measures both).
//
// `progress` is called after every scheduler call with a PCCall (kind,
// predictor step, number of steps, the sample after the call, and x_mean
// after ScoreSdeVe's predictor steps).
#include <algorithm>
#include <concepts>
#include <span>
#include <type_traits>
#include <variant>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/langevin.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sampler.hpp"
#include "ddpm/sampling/score_sde_ve.hpp"

namespace ddpm {

template <Scalar T>
struct PCCall {
  enum Kind { correct, predict };
  Kind kind;
  index_t step;       // the predictor step this call belongs to
  index_t num_steps;  // predictor steps in all
  ConstTensorView<T> sample;
  ConstTensorView<T> sample_mean;  // ScoreSdeVe predictor steps only; else empty
};

struct NoPCProgress {
  template <class C>
  void operator()(const C&) const {}
};

// A score model: (x [B, ...], sigma [B]) -> score with x's shape.
template <class M, class T>
concept ScoreModelFor = Scalar<T> && requires(M& m, ConstTensorView<T> x, std::span<const T> sigma) {
  { m(x, sigma) };
};

template <Scalar T, class Model, class Progress = NoPCProgress>
  requires ScoreModelFor<Model, T>
Tensor<T> score_sde_ve_sample(ScoreSdeVeScheduler<T>& scheduler, Model&& model, ConstTensorView<T> initial_noise,
                              const NoiseSource<T>& noise, Progress&& progress = {}) {
  const auto timesteps = scheduler.timesteps();
  const auto sigmas = scheduler.sigmas();
  require(!timesteps.empty() && sigmas.size() == timesteps.size(),
          "score_sde_ve_sample: call set_sigmas(n) on the scheduler first");
  require(initial_noise.rank() >= 1 && initial_noise.dim(0) > 0, "score_sde_ve_sample: expected a batch [B, ...], got ",
          initial_noise.shape().str());
  const index_t n = static_cast<index_t>(timesteps.size()), batch = initial_noise.dim(0);
  Tensor<T> x = detail::initial_sample(scheduler, initial_noise), mean(initial_noise.shape());
  std::vector<T> sigma_b(static_cast<std::size_t>(batch));
  const auto call_model = [&](index_t i) {
    const auto out = model(x.cview(), std::span<const T>(sigma_b));
    const ConstTensorView<T> m = detail::as_const_view<T>(out);
    require(m.shape() == x.shape(), "score_sde_ve_sample: model output ", m.shape().str(), " vs sample ",
            x.shape().str(), ": shapes differ");
    detail::check_model_output_finite(m, "score_sde_ve_sample", i, static_cast<double>(sigma_b[0]));
    return m;
  };
  for (index_t i = 0; i < n; ++i) {
    std::fill(sigma_b.begin(), sigma_b.end(), sigmas[static_cast<std::size_t>(i)]);
    for (index_t c = 0; c < scheduler.config().correct_steps; ++c) {
      const ConstTensorView<T> prev = scheduler.step_correct(call_model(i), x.cview(), noise);
      std::copy(prev.begin(), prev.end(), x.begin());
      progress(PCCall<T>{PCCall<T>::correct, i, n, x.cview(), {}});
    }
    const SdeVeOutput<T> out =
        scheduler.step_pred(call_model(i), static_cast<double>(timesteps[static_cast<std::size_t>(i)]), x.cview(), noise);
    std::copy(out.prev_sample.begin(), out.prev_sample.end(), x.begin());
    std::copy(out.prev_sample_mean.begin(), out.prev_sample_mean.end(), mean.begin());
    progress(PCCall<T>{PCCall<T>::predict, i, n, x.cview(), mean.cview()});
  }
  return mean;
}

namespace detail {
// Whether the sampler is between the two model calls of a second-order step.
template <class S>
bool mid_step(const S& s) {
  if constexpr (requires { s.state_in_first_order(); })
    return !s.state_in_first_order();
  else
    return false;
}
}  // namespace detail

// sample_loop with a Langevin corrector (see the top of this file).
template <Sampler S, class Model, class Progress = NoPCProgress>
  requires ModelFor<Model, typename S::scalar_type>
Tensor<typename S::scalar_type> sample_loop_pc(S& sampler, Model&& model,
                                               ConstTensorView<typename S::scalar_type> initial_noise,
                                               const NoiseSource<typename S::scalar_type>& noise,
                                               const LangevinConfig& corrector, Progress&& progress = {}) {
  using T = typename S::scalar_type;
  require(!sampler.timesteps().empty(), "sample_loop_pc: the sampler has no timesteps; call set_timesteps(n) first");
  LangevinCorrector<T> langevin(corrector);
  Tensor<T> x = detail::initial_sample(sampler, initial_noise);
  const std::vector<double> timesteps(sampler.timesteps().begin(), sampler.timesteps().end());
  const auto n = static_cast<index_t>(timesteps.size());
  for (index_t k = 0; k < n; ++k) {
    const double t = timesteps[static_cast<std::size_t>(k)];
    const StepOutput<T> r = detail::model_step(sampler, model, x.cview(), k, t, noise, "sample_loop_pc");
    std::copy(r.prev_sample.begin(), r.prev_sample.end(), x.begin());
    progress(PCCall<T>{PCCall<T>::predict, k, n, x.cview(), {}});
    if (k + 1 == n || detail::mid_step(sampler)) continue;
    const double t_next = timesteps[static_cast<std::size_t>(k + 1)];
    if (corrector.correct_steps > 0) {
      langevin.correct(sampler, model, x.view(), t_next, noise);
      progress(PCCall<T>{PCCall<T>::correct, k, n, x.cview(), {}});
    }
  }
  return x;
}

// The same with a sampler chosen at run time.
template <SamplerVariant V, class Model, class Progress = NoPCProgress>
  requires ModelFor<Model, variant_scalar_t<V>>
Tensor<variant_scalar_t<V>> sample_loop_pc(V& sampler, Model&& model, ConstTensorView<variant_scalar_t<V>> initial_noise,
                                           const NoiseSource<variant_scalar_t<V>>& noise,
                                           const LangevinConfig& corrector, Progress&& progress = {}) {
  return std::visit([&](auto& s) { return sample_loop_pc(s, model, initial_noise, noise, corrector, progress); },
                    sampler);
}

}  // namespace ddpm
