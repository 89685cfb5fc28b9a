#pragma once
// Keeping x_0 predictions in the data range: static clipping to
// [-range, range], or dynamic thresholding (Saharia et al. 2022, Imagen,
// section 2.3): s = the `ratio` quantile of |x_0| over each batch element,
// clamped to [1, sample_max_value], then x_0 = clamp(x_0, -s, s) / s.
// Thresholding replaces clipping when both are on, as in diffusers.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/numerics.hpp"

namespace ddpm {

struct SampleClipping {
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;

  void validate() const {
    require(!clip_sample || (std::isfinite(clip_sample_range) && clip_sample_range > 0),
            "clip_sample_range: must be finite and > 0, got ", clip_sample_range);
    require(!thresholding || (dynamic_thresholding_ratio >= 0 && dynamic_thresholding_ratio <= 1),
            "dynamic_thresholding_ratio: must be in [0, 1], got ", dynamic_thresholding_ratio);
    require(!thresholding || (std::isfinite(sample_max_value) && sample_max_value > 0),
            "sample_max_value: must be finite and > 0, got ", sample_max_value);
  }
  bool active() const { return clip_sample || thresholding; }
};

template <Scalar T>
void clip_sample(TensorView<T> x0, double range) {
  const T r = static_cast<T>(range);
  for (T& v : x0) v = std::clamp(v, -r, r);
}

// Dynamic thresholding per batch element (dim 0). `scratch` is reused between calls.
template <Scalar T>
void threshold_sample(TensorView<T> x0, double ratio, double sample_max_value, std::vector<T>& scratch) {
  require(x0.rank() >= 2, "threshold_sample: expected a batch of samples [N, C, ...], got shape ", x0.shape().str());
  const index_t batch = x0.dim(0);
  for (index_t b = 0; b < batch; ++b) {
    TensorView<T> xb = x0.slice(b, 1);
    scratch.resize(static_cast<std::size_t>(xb.numel()));
    std::transform(xb.begin(), xb.end(), scratch.begin(), [](T v) { return std::abs(v); });
    const T q = numerics::torch_quantile_inplace<T>(scratch, ratio);
    const T s = std::min(std::max(q, T(1)), static_cast<T>(sample_max_value));
    for (T& v : xb) v = std::min(std::max(v, -s), s) / s;
  }
}

// Applies whichever of thresholding / clipping the config asks for.
template <Scalar T>
void clip_or_threshold(const SampleClipping& c, TensorView<T> x0, std::vector<T>& scratch) {
  if (c.thresholding)
    threshold_sample(x0, c.dynamic_thresholding_ratio, c.sample_max_value, scratch);
  else if (c.clip_sample)
    clip_sample(x0, c.clip_sample_range);
}

}  // namespace ddpm
