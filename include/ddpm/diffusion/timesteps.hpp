#pragma once
// Which training timesteps a sampler visits: diffusers' `timestep_spacing`
// (Lin et al. 2023, Table 2), with NumPy's arithmetic (round-half-to-even,
// linspace's start + i * step, arange's fill) so the lists agree exactly.
//
//   leading:  arange(n) * (T // n), reversed, + steps_offset
//   trailing: round(arange(T, 0, -T / n)) - 1
//   linspace: round(linspace(0, T - 1, n)), reversed
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/numerics.hpp"

namespace ddpm {

enum class TimestepSpacing { leading, trailing, linspace };

inline std::string_view to_string(TimestepSpacing s) {
  switch (s) {
    case TimestepSpacing::leading: return "leading";
    case TimestepSpacing::trailing: return "trailing";
    case TimestepSpacing::linspace: return "linspace";
  }
  return "?";
}

inline TimestepSpacing parse_timestep_spacing(std::string_view name) {
  for (auto s : {TimestepSpacing::leading, TimestepSpacing::trailing, TimestepSpacing::linspace})
    if (name == to_string(s)) return s;
  fail("timestep_spacing: unknown value '", name, "', expected one of leading, trailing, linspace");
}

struct TimestepConfig {
  TimestepSpacing spacing = TimestepSpacing::leading;
  index_t steps_offset = 0;  // added to `leading` timesteps only (as diffusers does)
};

namespace detail {

inline void check_inference_steps(index_t num_train_timesteps, index_t n) {
  require(n >= 1, "num_inference_steps: must be >= 1, got ", n);
  require(n <= num_train_timesteps, "num_inference_steps: ", n, " is more than num_train_timesteps = ",
          num_train_timesteps);
}

// The spacing rules on real numbers, before rounding or truncation, in
// descending order. `points` is n (DDPM, DDIM, Euler) or n + 1 (DPM-Solver,
// whose lists are then cut to n); `last` is the first excluded timestep
// (T, or less for DPM-Solver's lambda_min_clipped).
inline std::vector<double> spaced_values(index_t num_train_timesteps, index_t last, index_t points,
                                         index_t kept, TimestepSpacing spacing) {
  std::vector<double> v;
  switch (spacing) {
    case TimestepSpacing::linspace: {
      const auto l = numerics::np_linspace(0.0, static_cast<double>(last - 1), points);
      v.assign(l.rbegin(), l.rend());
      break;
    }
    case TimestepSpacing::leading: {
      const index_t ratio = last / points;
      require(ratio >= 1, "num_inference_steps: ", kept, " is too many for ", last, " training timesteps");
      for (index_t i = points - 1; i >= 0; --i) v.push_back(static_cast<double>(i * ratio));
      break;
    }
    case TimestepSpacing::trailing: {
      // diffusers divides the full T by n here, even when `last` < T.
      const double ratio = static_cast<double>(num_train_timesteps) / static_cast<double>(kept);
      v = numerics::np_arange(static_cast<double>(last), 0.0, -ratio);
      break;
    }
  }
  if (points > kept && static_cast<index_t>(v.size()) > kept) v.resize(static_cast<std::size_t>(kept));
  return v;
}

// Rounds and offsets. As in diffusers, steps_offset may push a leading timestep
// to T (e.g. T = n = 1000, offset 1): listing it is allowed, stepping from it
// is the error (the step checks its timestep).
inline std::vector<double> finish_integer(std::vector<double> v, const TimestepConfig& c) {
  for (double& t : v) {
    t = numerics::round_half_even(t);
    if (c.spacing == TimestepSpacing::leading) t += static_cast<double>(c.steps_offset);
    if (c.spacing == TimestepSpacing::trailing) t -= 1;
  }
  return v;
}

}  // namespace detail

// DDPMScheduler / DDIMScheduler.set_timesteps: n integer timesteps, descending.
inline std::vector<double> spaced_timesteps(index_t num_train_timesteps, index_t num_inference_steps,
                                            const TimestepConfig& c = {}) {
  detail::check_inference_steps(num_train_timesteps, num_inference_steps);
  return detail::finish_integer(detail::spaced_values(num_train_timesteps, num_train_timesteps, num_inference_steps,
                                                      num_inference_steps, c.spacing),
                                c);
}

// DPMSolverMultistepScheduler.set_timesteps: n + 1 points with the last dropped.
// `last_timestep` < T when lambda_min_clipped cuts the end of the schedule.
inline std::vector<double> dpm_solver_timesteps(index_t num_train_timesteps, index_t num_inference_steps,
                                                const TimestepConfig& c, index_t last_timestep) {
  detail::check_inference_steps(num_train_timesteps, num_inference_steps);
  require(last_timestep >= 1 && last_timestep <= num_train_timesteps, "lambda_min_clipped: leaves ", last_timestep,
          " of ", num_train_timesteps, " training timesteps");
  return detail::finish_integer(detail::spaced_values(num_train_timesteps, last_timestep, num_inference_steps + 1,
                                                      num_inference_steps, c.spacing),
                                c);
}

// EulerDiscreteScheduler.set_timesteps: float32 timesteps; `linspace` is not rounded.
inline std::vector<double> euler_timesteps(index_t num_train_timesteps, index_t num_inference_steps,
                                           const TimestepConfig& c = {}) {
  detail::check_inference_steps(num_train_timesteps, num_inference_steps);
  auto v = detail::spaced_values(num_train_timesteps, num_train_timesteps, num_inference_steps, num_inference_steps,
                                 c.spacing);
  for (double& t : v) {
    if (c.spacing != TimestepSpacing::linspace) t = numerics::round_half_even(t);
    t = static_cast<float>(t);
    if (c.spacing == TimestepSpacing::leading) t = static_cast<float>(t + static_cast<double>(c.steps_offset));
    if (c.spacing == TimestepSpacing::trailing) t = static_cast<float>(t - 1);
  }
  return v;
}

// A timestep that indexes the training schedule: an integer in [0, T).
inline index_t discrete_timestep(double t, index_t num_train_timesteps) {
  require(std::isfinite(t) && t == std::floor(t) && t >= 0 && t < static_cast<double>(num_train_timesteps),
          "timestep: ", t, " is not an integer in [0, ", num_train_timesteps, ")");
  return static_cast<index_t>(t);
}

}  // namespace ddpm
