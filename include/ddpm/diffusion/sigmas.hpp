#pragma once
// The variance-exploding view of a schedule used by DPM-Solver and Euler:
// x_t / sqrt(abar) = x_0 + sigma * eps with sigma = sqrt((1 - abar) / abar)
// (Karras et al. 2022, Song et al. 2021). diffusers interpolates sigma
// linearly in t at the sampler's timesteps (numpy.interp, double) and stores
// the result in float32 in both precisions; the same rounding is kept here.
#include <algorithm>
#include <cmath>
#include <span>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
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

// How a sampler spaces its sigmas (diffusers' use_karras_sigmas,
// use_exponential_sigmas): interpolated at the spaced timesteps, or n values
// between the interpolated schedule's ends
//   karras:      (max^(1/rho) + ramp (min^(1/rho) - max^(1/rho)))^rho, ramp = linspace(0, 1, n), rho = 7
//                (Karras et al. 2022, eq. 5)
//   exponential: exp(linspace(log max, log min, n))
// whose timesteps are then sigma_to_t of each sigma.
enum class SigmaSpacing { interpolated, karras, exponential };

inline std::string_view to_string(SigmaSpacing s) {
  return s == SigmaSpacing::interpolated ? "interpolated" : s == SigmaSpacing::karras ? "karras" : "exponential";
}

// What the timesteps of Karras / exponential sigmas are rounded to: float32
// (Euler, Heun), integers half to even (DPM-Solver, UniPC, KDPM2), or
// truncated to integers (DPM-Solver with the cosine schedule: its int64 cast).
enum class SigmaTimesteps { float32, integer, truncated };

// Where Karras / exponential sigmas take their ends: the sigmas interpolated
// at the spaced timesteps (Euler, Heun), or the whole training schedule's
// sigmas (DPM-Solver: sigma(t = 0) and sigma(t = T - 1)).
enum class SigmaRange { spaced_timesteps, training_schedule };

inline std::vector<double> karras_sigmas(double sigma_min, double sigma_max, index_t n, double rho = 7.0) {
  const auto ramp = numerics::np_linspace(0.0, 1.0, n);
  const double min_inv_rho = std::pow(sigma_min, 1.0 / rho), max_inv_rho = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> out;
  out.reserve(ramp.size());
  for (double r : ramp) out.push_back(std::pow(max_inv_rho + r * (min_inv_rho - max_inv_rho), rho));
  return out;
}

inline std::vector<double> exponential_sigmas(double sigma_min, double sigma_max, index_t n) {
  auto out = numerics::np_linspace(std::log(sigma_max), std::log(sigma_min), n);
  for (double& v : out) v = std::exp(v);
  return out;
}

// diffusers' _sigma_to_t: the fractional training timestep of `sigma`, by
// linear interpolation in log sigma over the (ascending) training log-sigmas.
inline double sigma_to_t(double sigma, std::span<const double> log_sigmas) {
  require(log_sigmas.size() >= 2, "sigma_to_t: need at least 2 training sigmas");
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  std::size_t low = 0;
  for (std::size_t j = 0; j < log_sigmas.size(); ++j)
    if (log_sigma - log_sigmas[j] >= 0) low = j;
  low = std::min(low, log_sigmas.size() - 2);
  const double lo = log_sigmas[low], hi = log_sigmas[low + 1];
  const double w = std::clamp((lo - log_sigma) / (lo - hi), 0.0, 1.0);
  return (1 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

// The sampler's sigmas for `spacing` (n + 1 values, rounded to float32 as
// diffusers stores them); for Karras / exponential sigmas `timesteps` is
// replaced by the timesteps of the new sigmas, rounded as `rounding` says.
// The training sigmas and their logs are in T, as diffusers computes them in
// each precision; the new sigmas are computed in double before rounding.
template <Scalar T>
std::vector<T> spaced_sigmas(const NoiseSchedule<T>& s, std::vector<double>& timesteps, SigmaSpacing spacing,
                             FinalSigmasType final_type, SigmaTimesteps rounding,
                             SigmaRange range = SigmaRange::spaced_timesteps) {
  if (spacing == SigmaSpacing::interpolated) return interpolated_sigmas(s, timesteps, final_type);
  const auto table = training_sigmas(s);
  std::vector<double> log_sigmas;
  log_sigmas.reserve(table.size());
  for (double v : table) log_sigmas.push_back(static_cast<double>(std::log(static_cast<T>(v))));
  require(!timesteps.empty(), "sigmas: no timesteps");
  const bool whole = range == SigmaRange::training_schedule;
  const double sigma_max = whole ? table.back() : numerics::np_interp_unit_grid(timesteps.front(), table);
  const double sigma_min = whole ? table.front() : numerics::np_interp_unit_grid(timesteps.back(), table);
  require(std::isfinite(sigma_max) && sigma_min > 0, "sigmas: ", to_string(spacing),
          " sigmas need finite, positive ends; got ", sigma_min, " .. ", sigma_max);
  const auto n = static_cast<index_t>(timesteps.size());
  const auto sig = spacing == SigmaSpacing::karras ? karras_sigmas(sigma_min, sigma_max, n)
                                                   : exponential_sigmas(sigma_min, sigma_max, n);
  std::vector<T> out;
  out.reserve(sig.size() + 1);
  for (std::size_t i = 0; i < sig.size(); ++i) {
    const double t = sigma_to_t(sig[i], log_sigmas);
    timesteps[i] = rounding == SigmaTimesteps::integer     ? numerics::round_half_even(t)
                   : rounding == SigmaTimesteps::truncated ? std::trunc(t)
                                                           : static_cast<double>(static_cast<float>(t));
    out.push_back(static_cast<T>(static_cast<float>(sig[i])));
  }
  out.push_back(final_type == FinalSigmasType::zero ? T(0) : static_cast<T>(static_cast<float>(table.front())));
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
