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
#include <algorithm>
#include <concepts>
#include <utility>

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
  const auto timesteps = std::span<const double>(sampler.timesteps());
  require(!timesteps.empty(), "sample_loop: the sampler has no timesteps; call set_timesteps(n) first");
  Tensor<T> x(initial_noise.shape());
  const T sigma0 = sampler.init_noise_sigma();
  for (index_t i = 0; i < x.numel(); ++i) x[i] = initial_noise[i] * sigma0;

  const auto n = static_cast<index_t>(timesteps.size());
  for (index_t i = 0; i < n; ++i) {
    const double t = timesteps[static_cast<std::size_t>(i)];
    const ConstTensorView<T> x_in = sampler.scale_model_input(x.cview(), t);
    const auto out = model(x_in, t);
    const ConstTensorView<T> m = detail::as_const_view<T>(out);
    require_same_shape(m.shape(), x.shape(), "sample_loop: model output vs sample");
    const StepOutput<T> r = sampler.step(m, t, x.cview(), noise);
    std::copy(r.prev_sample.begin(), r.prev_sample.end(), x.begin());
    detail::report_progress(progress, i, n, t, x.cview());
  }
  return x;
}

}  // namespace ddpm
