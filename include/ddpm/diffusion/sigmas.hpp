#pragma once
// The variance-exploding view of a schedule used by DPM-Solver and Euler:
// x_t / sqrt(abar) = x_0 + sigma * eps with sigma = sqrt((1 - abar) / abar)
// (Karras et al. 2022, Song et al. 2021). diffusers interpolates sigma
// linearly in t at the sampler's timesteps (numpy.interp, double) and stores
// the result in float32 in both precisions; the same rounding is kept here.
#include <cmath>
#include <span>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/diffusion/numerics.hpp"
#include "ddpm/diffusion/schedule.hpp"

namespace ddpm {

// The sigma appended after the last timestep.
enum class FinalSigmasType { zero, sigma_min };

inline std::string_view to_string(FinalSigmasType f) { return f == FinalSigmasType::zero ? "zero" : "sigma_min"; }

inline FinalSigmasType parse_final_sigmas_type(std::string_view name) {
  if (name == "zero") return FinalSigmasType::zero;
  if (name == "sigma_min") return FinalSigmasType::sigma_min;
  fail("final_sigmas_type: unknown value '", name, "', expected zero or sigma_min");
}

// sqrt((1 - abar) / abar) for every training timestep, in T (as torch computes it).
template <Scalar T>
std::vector<double> training_sigmas(const NoiseSchedule<T>& s) {
  std::vector<double> out;
  out.reserve(s.alphas_cumprod().size());
  for (T a : s.alphas_cumprod()) out.push_back(static_cast<double>(std::sqrt((T(1) - a) / a)));
  return out;
}

// The sampler's sigmas: interpolated at `timesteps`, then the final sigma;
// n + 1 values, each rounded to float32 as diffusers stores them.
template <Scalar T>
std::vector<T> interpolated_sigmas(const NoiseSchedule<T>& s, std::span<const double> timesteps,
                                   FinalSigmasType final_type) {
  const auto table = training_sigmas(s);
  std::vector<T> out;
  out.reserve(timesteps.size() + 1);
  for (double t : timesteps) {
    const double v = numerics::np_interp_unit_grid(t, table);
    require(std::isfinite(v), "sigmas: sigma at timestep ", t, " is not finite (alphas_cumprod is 0 there)");
    out.push_back(static_cast<T>(static_cast<float>(v)));
  }
  const T last = final_type == FinalSigmasType::zero ? T(0) : static_cast<T>(static_cast<float>(table.front()));
  out.push_back(last);
  return out;
}

// alpha_t and sigma_t of the variance-preserving process at a VE sigma:
// alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t.
template <class T>
struct AlphaSigma {
  T alpha;
  T sigma;
  // log-SNR / 2, DPM-Solver's lambda = log(alpha) - log(sigma) (+inf at sigma = 0).
  T lambda() const { return std::log(alpha) - std::log(sigma); }
};

template <class T>
AlphaSigma<T> alpha_sigma_from_sigma(T sigma) {
  const T alpha = T(1) / std::sqrt(sigma * sigma + T(1));
  return {alpha, sigma * alpha};
}

}  // namespace ddpm
