#pragma once
// Full-reference image quality: PSNR and SSIM of one grey-scale image
// against a reference, both h x w (row-major) on the same pixel scale
// [0, peak] (255 for 8-bit images).
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"

namespace examples {

// PSNR = 10 log10(peak^2 / MSE) in dB; +infinity for identical images.
inline double psnr(std::span<const float> x, std::span<const float> ref, double peak = 255) {
  ddpm::require(x.size() == ref.size() && !x.empty(), "psnr: images of ", x.size(), " and ", ref.size(), " pixels");
  double mse = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - ref[i];
    mse += d * d;
  }
  mse /= static_cast<double>(x.size());
  return mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(peak * peak / mse);
}

// SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, eq. 13) as their reference
// implementation computes it: local means, variances and covariance under an
// 11 x 11 Gaussian window (sigma 1.5, normalised to sum 1), evaluated at every
// position where the window fits inside the image ("valid": (h - 10) x (w - 10)
// positions), C1 = (0.01 peak)^2, C2 = (0.03 peak)^2; the mean of the map.
// Images need h, w >= 11.
inline double ssim(std::span<const float> x, std::span<const float> ref, int h, int w, double peak = 255) {
  constexpr int kWin = 11;
  constexpr double kSigma = 1.5;
  ddpm::require(h >= kWin && w >= kWin && x.size() == static_cast<std::size_t>(h) * w && ref.size() == x.size(),
                "ssim: expected two ", h, "x", w, " images with h, w >= 11, got ", x.size(), " and ", ref.size(),
                " pixels");
  double g[kWin], sum = 0;
  for (int i = 0; i < kWin; ++i) sum += g[i] = std::exp(-0.5 * (i - kWin / 2) * (i - kWin / 2) / (kSigma * kSigma));
  for (double& v : g) v /= sum;
  const double c1 = (0.01 * peak) * (0.01 * peak), c2 = (0.03 * peak) * (0.03 * peak);
  double total = 0;
  for (int i = 0; i + kWin <= h; ++i)
    for (int j = 0; j + kWin <= w; ++j) {
      double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
      for (int a = 0; a < kWin; ++a)
        for (int b = 0; b < kWin; ++b) {
          const double wt = g[a] * g[b];
          const auto p = static_cast<std::size_t>((i + a) * w + j + b);
          const double u = x[p], v = ref[p];
          mx += wt * u, my += wt * v, sxx += wt * u * u, syy += wt * v * v, sxy += wt * u * v;
        }
      const double vx = sxx - mx * mx, vy = syy - my * my, cxy = sxy - mx * my;
      total += (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
    }
  return total / ((h - kWin + 1) * (w - kWin + 1));
}

}  // namespace examples
