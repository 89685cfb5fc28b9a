#pragma once
// The sampling loop, written once for every sampler and any model:
//
//   x = initial_noise * init_noise_sigma
//   for t in timesteps:  x = step(model(scale_model_input(x, t), t), t, x).prev_sample
//
// `model` is any callable (ConstTensorView<T> x_t, double t) -> tensor
// (Tensor<T> or anything convertible to ConstTensorView<T>): a network, a
// guidance wrapper, a closed-form test model. `progress` is called after each
// step with (step_index, num_steps, t), or with the current sample as a fourth
// argument if it accepts one. The library prints nothing.
//
// The sampler is a concrete one (DDIMSampler<float>, ...) or a variant of
// samplers (AnySampler<T>, sampling/any_sampler.hpp). Every step of every
// loop (sample_loop, sdedit, repaint) is detail::model_step: a model output
// that is not finite (a NaN weight, an overflow) stops sampling with a
// ddpm::Error naming the step and its timestep.
#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>
#include <variant>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

// The default progress callback: does nothing.
struct NoProgress {
  void operator()(index_t, index_t, double) const {}
};

template <class M, class T>
concept ModelFor = Scalar<T> && requires(M& m, ConstTensorView<T> x, double t) {
  { m(x, t) };
};

namespace detail {

template <class V>
struct sampler_variant_info : std::false_type {};
template <Sampler S, Sampler... Ss>
  requires(std::same_as<typename S::scalar_type, typename Ss::scalar_type> && ...)
struct sampler_variant_info<std::variant<S, Ss...>> : std::true_type {
  using scalar_type = typename S::scalar_type;
};

}  // namespace detail

// A std::variant of samplers of one scalar type (AnySampler<T>).
template <class V>
concept SamplerVariant = detail::sampler_variant_info<V>::value;

template <SamplerVariant V>
using variant_scalar_t = typename detail::sampler_variant_info<V>::scalar_type;

namespace detail {
template <Scalar T, class R>
ConstTensorView<T> as_const_view(const R& r) {
  if constexpr (std::same_as<R, Tensor<T>>)
    return r.view();
  else
    return ConstTensorView<T>(r);
}

// Calls progress(step, steps, t, x) when the callback takes the sample, else
// progress(step, steps, t): one place for every loop (sample_loop, sdedit, inpaint).
template <Scalar T, class Progress>
void report_progress(Progress& progress, index_t step, index_t steps, double t, ConstTensorView<T> x) {
  if constexpr (std::invocable<Progress&, index_t, index_t, double, ConstTensorView<T>>)
    progress(step, steps, t, x);
  else
    progress(step, steps, t);
}

// Whether x[i] is NaN or +-inf: all exponent bits set (IEEE 754 binary32 / binary64).
inline bool non_finite(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x7f800000u) == 0x7f800000u;
}
inline bool non_finite(double v) {
  std::uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

// Throws when an element of the model output is not finite. One pass with an
// integer test (no branch per element, so it vectorises); the element is only
// searched for on failure.
template <Scalar T>
void check_model_output_finite(ConstTensorView<T> m, const char* who, index_t step, double t) {
  const T* p = m.data();
  const index_t n = m.numel();
  bool bad = false;
  for (index_t i = 0; i < n; ++i) bad |= non_finite(p[i]);
  if (!bad) [[likely]]
    return;
  index_t k = 0;
  while (!non_finite(p[k])) ++k;
  fail(who, ": the model output is not finite at step ", step, " (timestep ", t, "): element ", k, " of ", n,
       " is ", p[k]);
}

// x_T = initial_noise * init_noise_sigma, the start every loop shares.
template <class S, Scalar T>
Tensor<T> initial_sample(const S& sampler, ConstTensorView<T> initial_noise) {
  Tensor<T> x(initial_noise.shape());
  const T sigma0 = sampler.init_noise_sigma();
  for (index_t i = 0; i < x.numel(); ++i) x[i] = initial_noise[i] * sigma0;
  return x;
}

// One reverse step at timesteps[step] = t, the body every loop shares: the
// model sees scale_model_input(x, t); its output must have x's shape and be
// finite; the sampler steps. The result's views are the sampler's buffers.
template <Sampler S, class Model>
StepOutput<typename S::scalar_type> model_step(S& sampler, Model& model, ConstTensorView<typename S::scalar_type> x,
                                               index_t step, double t,
                                               const NoiseSource<typename S::scalar_type>& noise, const char* who) {
  using T = typename S::scalar_type;
  const auto out = model(sampler.scale_model_input(x, t), t);
  const ConstTensorView<T> m = as_const_view<T>(out);
  require(m.shape() == x.shape(), who, ": model output ", m.shape().str(), " vs sample ", x.shape().str(),
          ": shapes differ");
  check_model_output_finite(m, who, step, t);
  return sampler.step(m, t, x, noise);
}

// Runs the sampler's timesteps from position `first` on, x in place;
// progress sees (k, n - first, t) for the k-th step run.
template <Sampler S, class Model, class Progress>
void run_steps(S& sampler, Model& model, Tensor<typename S::scalar_type>& x, index_t first,
               const NoiseSource<typename S::scalar_type>& noise, Progress& progress, const char* who) {
  using T = typename S::scalar_type;
  const auto timesteps = std::span<const double>(sampler.timesteps());
  const auto n = static_cast<index_t>(timesteps.size()) - first;
  for (index_t k = 0; k < n; ++k) {
    const double t = timesteps[static_cast<std::size_t>(first + k)];
    const StepOutput<T> r = model_step(sampler, model, x.cview(), first + k, t, noise, who);
    std::copy(r.prev_sample.begin(), r.prev_sample.end(), x.begin());
    report_progress<T>(progress, k, n, t, x.cview());
  }
}
}  // namespace detail

// Runs the whole reverse process from `initial_noise` (N(0, I), unscaled).
// set_timesteps must have been called. Returns the final sample.
template <Sampler S, class Model, class Progress = NoProgress>
  requires ModelFor<Model, typename S::scalar_type>
Tensor<typename S::scalar_type> sample_loop(S& sampler, Model&& model,
                                            ConstTensorView<typename S::scalar_type> initial_noise,
                                            const NoiseSource<typename S::scalar_type>& noise = {},
                                            Progress&& progress = {}) {
  using T = typename S::scalar_type;
  require(!sampler.timesteps().empty(), "sample_loop: the sampler has no timesteps; call set_timesteps(n) first");
  Tensor<T> x = detail::initial_sample(sampler, initial_noise);
  detail::run_steps(sampler, model, x, 0, noise, progress, "sample_loop");
  return x;
}

// The same with a sampler chosen at run time.
template <SamplerVariant V, class Model, class Progress = NoProgress>
  requires ModelFor<Model, variant_scalar_t<V>>
Tensor<variant_scalar_t<V>> sample_loop(V& sampler, Model&& model, ConstTensorView<variant_scalar_t<V>> initial_noise,
                                        const NoiseSource<variant_scalar_t<V>>& noise = {}, Progress&& progress = {}) {
  return std::visit([&](auto& s) { return sample_loop(s, model, initial_noise, noise, progress); }, sampler);
}

}  // namespace ddpm
