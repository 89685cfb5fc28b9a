#pragma once
// What a denoising network predicts, and the conversions between the
// parameterisations, written once for every sampler.
//
// With x_t = a * x_0 + b * eps (a = sqrt(abar_t), b = sqrt(1 - abar_t)):
//   epsilon       (Ho et al. 2020):       x_0 = (x_t - b * eps) / a
//   v_prediction  (Salimans & Ho 2022):   v = a * eps - b * x_0, so
//                                         x_0 = a * x_t - b * v, eps = a * v + b * x_t
//   sample        (x_0 directly):         eps = (x_t - a * x_0) / b
// DPM-Solver uses the same forms with (alpha_t, sigma_t); Euler's
// variance-exploding forms (x = x_0 + sigma * eps) are at the end.
#include <cmath>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm {

enum class PredictionType { epsilon, v_prediction, sample };

inline std::string_view to_string(PredictionType p) {
  switch (p) {
    case PredictionType::epsilon: return "epsilon";
    case PredictionType::v_prediction: return "v_prediction";
    case PredictionType::sample: return "sample";
  }
  return "?";
}

inline PredictionType parse_prediction_type(std::string_view name) {
  for (auto p : {PredictionType::epsilon, PredictionType::v_prediction, PredictionType::sample})
    if (name == to_string(p)) return p;
  fail("prediction_type: unknown value '", name, "', expected one of epsilon, v_prediction, sample");
}

namespace detail {

// Applies f(i) -> value to every element of `out` after checking the shapes.
template <class T, class F>
void elementwise(TensorView<T> out, ConstTensorView<T> a, ConstTensorView<T> b, const char* what, F&& f) {
  require_same_shape(a.shape(), b.shape(), what);
  require_same_shape(out.shape(), a.shape(), what);
  const index_t n = out.numel();
  T* o = out.data();
  for (index_t i = 0; i < n; ++i) o[i] = f(i);
}

}  // namespace detail

// x_0 implied by the model output at a timestep with coefficients (a, b).
// Epsilon prediction needs a > 0: at a zero-SNR timestep x_0 is unrecoverable.
template <Scalar T>
void predict_original_sample(PredictionType type, T a, T b, ConstTensorView<T> model_output,
                             ConstTensorView<T> sample, TensorView<T> x0) {
  require(type != PredictionType::epsilon || a > T(0),
          "prediction_type: epsilon prediction cannot recover x_0 where alphas_cumprod = 0 (zero terminal SNR); "
          "use v_prediction or a timestep with alphas_cumprod > 0");
  const T* m = model_output.data();
  const T* x = sample.data();
  switch (type) {
    case PredictionType::epsilon:
      detail::elementwise(x0, model_output, sample, "model_output vs sample", [&](index_t i) { return (x[i] - b * m[i]) / a; });
      break;
    case PredictionType::v_prediction:
      detail::elementwise(x0, model_output, sample, "model_output vs sample", [&](index_t i) { return a * x[i] - b * m[i]; });
      break;
    case PredictionType::sample:
      detail::elementwise(x0, model_output, sample, "model_output vs sample", [&](index_t i) { return m[i]; });
      break;
  }
}

// eps from x_t and x_0: (x_t - a * x_0) / b.
template <Scalar T>
void epsilon_from_original_sample(T a, T b, ConstTensorView<T> sample, ConstTensorView<T> x0, TensorView<T> eps) {
  const T* x = sample.data();
  const T* p = x0.data();
  detail::elementwise(eps, sample, x0, "sample vs pred_original_sample", [&](index_t i) { return (x[i] - a * p[i]) / b; });
}

// eps implied by the model output; `x0` is the (unclipped) prediction of
// predict_original_sample, used for sample prediction.
template <Scalar T>
void predict_epsilon(PredictionType type, T a, T b, ConstTensorView<T> model_output, ConstTensorView<T> sample,
                     ConstTensorView<T> x0, TensorView<T> eps) {
  const T* m = model_output.data();
  const T* x = sample.data();
  switch (type) {
    case PredictionType::epsilon:
      detail::elementwise(eps, model_output, sample, "model_output vs sample", [&](index_t i) { return m[i]; });
      break;
    case PredictionType::v_prediction:
      detail::elementwise(eps, model_output, sample, "model_output vs sample", [&](index_t i) { return a * m[i] + b * x[i]; });
      break;
    case PredictionType::sample: epsilon_from_original_sample(a, b, sample, x0, eps); break;
  }
}

// The training target for a model of this type: eps, v = a * eps - b * x_0, or x_0.
template <Scalar T>
void prediction_target(PredictionType type, T a, T b, ConstTensorView<T> x0, ConstTensorView<T> noise,
                       TensorView<T> target) {
  const T* p = x0.data();
  const T* e = noise.data();
  switch (type) {
    case PredictionType::epsilon:
      detail::elementwise(target, x0, noise, "x0 vs noise", [&](index_t i) { return e[i]; });
      break;
    case PredictionType::v_prediction:
      detail::elementwise(target, x0, noise, "x0 vs noise", [&](index_t i) { return a * e[i] - b * p[i]; });
      break;
    case PredictionType::sample:
      detail::elementwise(target, x0, noise, "x0 vs noise", [&](index_t i) { return p[i]; });
      break;
  }
}

// Variance-exploding form (x = x_0 + sigma * eps, the model sees x / sqrt(sigma^2 + 1)),
// as EulerDiscreteScheduler computes it:
//   epsilon:      x_0 = x - sigma * eps
//   v_prediction: x_0 = v * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)
//   sample:       x_0 = model output
template <Scalar T>
void predict_original_sample_ve(PredictionType type, T sigma, ConstTensorView<T> model_output,
                                ConstTensorView<T> sample, TensorView<T> x0) {
  const T* m = model_output.data();
  const T* x = sample.data();
  switch (type) {
    case PredictionType::epsilon:
      detail::elementwise(x0, model_output, sample, "model_output vs sample", [&](index_t i) { return x[i] - sigma * m[i]; });
      break;
    case PredictionType::v_prediction: {
      const T s2 = sigma * sigma + T(1);
      const T c_out = -sigma / std::sqrt(s2);
      detail::elementwise(x0, model_output, sample, "model_output vs sample", [&](index_t i) { return m[i] * c_out + x[i] / s2; });
      break;
    }
    case PredictionType::sample:
      detail::elementwise(x0, model_output, sample, "model_output vs sample", [&](index_t i) { return m[i]; });
      break;
  }
}

}  // namespace ddpm
