#pragma once
// Image resampling for the super-resolution example: the degradation (a
// k x k box average) and the bicubic upsampler (the baseline, and the
// condition image of SR3-style models). Both work on 8-bit pixel values
// held in floats: the output is rounded to the nearest integer in [0, 255],
// as an 8-bit image file would store it.
#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"

namespace examples {

// A k x k box average: out[i][j] = round(mean of in[k i .. k i + k - 1][k j .. k j + k - 1]),
// in: h x w values in [0, 255] (row-major), h and w divisible by k; out: (h / k) x (w / k).
inline void box_downsample(std::span<const float> in, int h, int w, int k, std::span<float> out) {
  ddpm::require(k >= 1 && h % k == 0 && w % k == 0, "box_downsample: ", h, "x", w, " is not divisible by ", k);
  ddpm::require(in.size() == static_cast<std::size_t>(h) * w && out.size() == static_cast<std::size_t>(h / k) * (w / k),
                "box_downsample: buffer sizes do not match ", h, "x", w, " / ", k);
  const int ho = h / k, wo = w / k;
  for (int i = 0; i < ho; ++i)
    for (int j = 0; j < wo; ++j) {
      double s = 0;
      for (int a = 0; a < k; ++a)
        for (int b = 0; b < k; ++b) s += in[static_cast<std::size_t>((k * i + a) * w + k * j + b)];
      out[static_cast<std::size_t>(i * wo + j)] = static_cast<float>(std::round(s / (k * k)));
    }
}

// Keys' cubic convolution kernel (Keys 1981, eq. 15) with a = -0.5, the
// bicubic kernel of PIL and MATLAB's imresize (OpenCV's INTER_CUBIC uses
// a = -0.75). It reproduces polynomials of degree <= 2 (third-order accurate).
inline double keys_cubic(double x, double a = -0.5) {
  x = std::abs(x);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

namespace detail {
// The 4 taps and weights of output sample o of an n -> n * k upsampling:
// pixel centres aligned (source coordinate (o + 0.5) / k - 0.5, as PIL and
// OpenCV), source indices clamped to [0, n - 1] (edge pixels replicated).
struct CubicTaps {
  std::array<int, 4> index;
  std::array<double, 4> weight;
};
inline CubicTaps cubic_taps(int o, int n, int k) {
  const double src = (o + 0.5) / k - 0.5;
  const int i0 = static_cast<int>(std::floor(src));
  const double f = src - i0;
  CubicTaps t;
  for (int m = 0; m < 4; ++m) {
    t.index[static_cast<std::size_t>(m)] = std::clamp(i0 - 1 + m, 0, n - 1);
    t.weight[static_cast<std::size_t>(m)] = keys_cubic(f - (m - 1));
  }
  return t;
}
}  // namespace detail

// Bicubic upsampling by an integer factor k (separable Keys kernel, a = -0.5,
// see detail::cubic_taps for the sample positions and the border), then
// clamped to [0, 255] and rounded. in: h x w, out: (h k) x (w k), row-major.
// The weights sum to 1, so a constant image stays constant; away from the
// border a linear ramp is reproduced exactly (before rounding).
inline void bicubic_upsample(std::span<const float> in, int h, int w, int k, std::span<float> out) {
  ddpm::require(k >= 1 && in.size() == static_cast<std::size_t>(h) * w &&
                    out.size() == static_cast<std::size_t>(h) * k * w * k,
                "bicubic_upsample: buffer sizes do not match ", h, "x", w, " x ", k);
  const int ho = h * k, wo = w * k;
  std::vector<double> rows(static_cast<std::size_t>(ho) * w);  // vertical pass: ho x w
  for (int i = 0; i < ho; ++i) {
    const auto t = detail::cubic_taps(i, h, k);
    for (int j = 0; j < w; ++j) {
      double s = 0;
      for (std::size_t m = 0; m < 4; ++m) s += t.weight[m] * in[static_cast<std::size_t>(t.index[m] * w + j)];
      rows[static_cast<std::size_t>(i * w + j)] = s;
    }
  }
  for (int j = 0; j < wo; ++j) {
    const auto t = detail::cubic_taps(j, w, k);
    for (int i = 0; i < ho; ++i) {
      double s = 0;
      for (std::size_t m = 0; m < 4; ++m) s += t.weight[m] * rows[static_cast<std::size_t>(i * w + t.index[m])];
      out[static_cast<std::size_t>(i * wo + j)] = static_cast<float>(std::round(std::clamp(s, 0.0, 255.0)));
    }
  }
}

}  // namespace examples
