#pragma once
// The noise schedule of a discrete-time diffusion model (Ho et al. 2020):
// betas, alphas = 1 - betas, alphas_cumprod (written alpha-bar in the papers)
// and the quantities derived from them.
//
// Built exactly as diffusers builds it, so that samplers agree with diffusers
// to rounding: for T = float the schedule is held in float32 as diffusers
// holds it (torch.linspace in float32, cumprod accumulated in double and
// rounded per element, the cosine schedule computed in double then rounded);
// for T = double the same code runs in double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/numerics.hpp"

namespace ddpm {

enum class BetaSchedule { linear, scaled_linear, squaredcos_cap_v2, sigmoid };

inline std::string_view to_string(BetaSchedule s) {
  switch (s) {
    case BetaSchedule::linear: return "linear";
    case BetaSchedule::scaled_linear: return "scaled_linear";
    case BetaSchedule::squaredcos_cap_v2: return "squaredcos_cap_v2";
    case BetaSchedule::sigmoid: return "sigmoid";
  }
  return "?";
}

inline BetaSchedule parse_beta_schedule(std::string_view name) {
  for (auto s : {BetaSchedule::linear, BetaSchedule::scaled_linear, BetaSchedule::squaredcos_cap_v2,
                 BetaSchedule::sigmoid})
    if (name == to_string(s)) return s;
  fail("beta_schedule: unknown schedule '", name,
       "', expected one of linear, scaled_linear, squaredcos_cap_v2, sigmoid");
}

struct ScheduleConfig {
  index_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::linear;
  std::vector<double> trained_betas{};  // when non-empty, used instead of beta_schedule (as diffusers does)
  bool rescale_betas_zero_snr = false;  // Lin et al. 2023, Algorithm 1
};

// How DDPM's reverse-process variance is chosen (Ho et al. 2020, section 3.2).
// fixed_small: the posterior variance beta-tilde (eq. 7); fixed_large: beta_t.
// The *_log variants are the same variances computed through their logarithm.
enum class VarianceType { fixed_small, fixed_small_log, fixed_large, fixed_large_log };

inline std::string_view to_string(VarianceType v) {
  switch (v) {
    case VarianceType::fixed_small: return "fixed_small";
    case VarianceType::fixed_small_log: return "fixed_small_log";
    case VarianceType::fixed_large: return "fixed_large";
    case VarianceType::fixed_large_log: return "fixed_large_log";
  }
  return "?";
}

inline VarianceType parse_variance_type(std::string_view name) {
  for (auto v : {VarianceType::fixed_small, VarianceType::fixed_small_log, VarianceType::fixed_large,
                 VarianceType::fixed_large_log})
    if (name == to_string(v)) return v;
  fail("variance_type: unsupported value '", name,
       "', expected one of fixed_small, fixed_small_log, fixed_large, fixed_large_log");
}

// The coefficients of the posterior mean mu~(x_t, x_0) = x0 * x_0 + xt * x_t
// (Ho et al. 2020, eq. 7), for a jump from t to an earlier s.
template <class T>
struct PosteriorCoefficients {
  T x0;
  T xt;
};

// Eq. 7 generalised to a jump t -> s (abar_prev = alpha-bar at s; 1 for s < 0):
// beta = 1 - abar_t / abar_prev, the form diffusers uses for sparse timesteps.
// Scalar arithmetic stays in T, in diffusers' order.
template <class T>
PosteriorCoefficients<T> posterior_mean_coefficients(T abar_t, T abar_prev) {
  const T beta_prod_t = T(1) - abar_t, beta_prod_prev = T(1) - abar_prev;
  const T alpha_t = abar_t / abar_prev, beta_t = T(1) - alpha_t;
  return {(std::sqrt(abar_prev) * beta_t) / beta_prod_t, std::sqrt(alpha_t) * beta_prod_prev / beta_prod_t};
}

// The reverse-process variance for the jump t -> s, as a variance (not a log).
// fixed_small clamps beta-tilde at 1e-20 as diffusers does (it is 0 at t = 0).
// fixed_large_log: diffusers 0.40 takes the square root of log(beta) (NaN);
// this is Glide's intended exp(log(beta)) instead.
template <class T>
T posterior_variance(T abar_t, T abar_prev, VarianceType type) {
  const T beta_t = T(1) - abar_t / abar_prev;
  const T small = std::max((T(1) - abar_prev) / (T(1) - abar_t) * beta_t, T(1e-20));
  switch (type) {
    case VarianceType::fixed_small: return small;
    case VarianceType::fixed_small_log: return std::exp(std::log(small));
    case VarianceType::fixed_large: return beta_t;
    case VarianceType::fixed_large_log: return std::exp(std::log(beta_t));
  }
  return small;
}

// The standard deviation of the noise added by a DDPM step (sqrt of the above;
// fixed_small_log takes exp(0.5 log v) as diffusers does).
template <class T>
T posterior_std(T abar_t, T abar_prev, VarianceType type) {
  const T v = posterior_variance(abar_t, abar_prev, type);
  if (type == VarianceType::fixed_small_log || type == VarianceType::fixed_large_log)
    return std::exp(T(0.5) * std::log(v));
  return std::sqrt(v);
}

namespace detail {

// Glide's cosine schedule (Nichol & Dhariwal 2021, eq. 17), in double, capped at 0.999.
inline std::vector<double> cosine_betas(index_t n, double max_beta = 0.999) {
  auto alpha_bar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
    return c * c;
  };
  std::vector<double> b(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    const double t1 = static_cast<double>(i) / static_cast<double>(n);
    const double t2 = static_cast<double>(i + 1) / static_cast<double>(n);
    b[static_cast<std::size_t>(i)] = std::min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta);
  }
  return b;
}

template <class T>
std::vector<T> one_minus(std::span<const T> x) {
  std::vector<T> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = T(1) - x[i];
  return y;
}

// Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
// Flawed", Algorithm 1: shift sqrt(alpha-bar) so its last value is 0, rescale
// so its first is unchanged, and convert back to betas (the last one is 1).
template <class T>
std::vector<T> rescale_zero_terminal_snr(std::span<const T> betas) {
  require(betas.size() >= 2, "rescale_betas_zero_snr: needs num_train_timesteps >= 2, got ", betas.size());
  const std::vector<T> alphas = one_minus(betas);
  std::vector<T> s = numerics::torch_cumprod<T>(alphas);
  for (T& v : s) v = std::sqrt(v);
  const T s0 = s.front(), sT = s.back();
  require(s0 > sT, "rescale_betas_zero_snr: alphas_cumprod must decrease from first to last timestep");
  const T scale = s0 / (s0 - sT);
  for (T& v : s) v = (v - sT) * scale;
  std::vector<T> out(s.size());
  T prev = s[0] * s[0];
  out[0] = T(1) - prev;
  for (std::size_t i = 1; i < s.size(); ++i) {
    const T abar = s[i] * s[i];
    out[i] = T(1) - abar / prev;
    prev = abar;
  }
  return out;
}

}  // namespace detail

template <Scalar T>
class NoiseSchedule {
 public:
  using scalar_type = T;

  explicit NoiseSchedule(const ScheduleConfig& config = {}) : config_(config) {
    validate(config);
    betas_ = make_betas(config);
    if (config.rescale_betas_zero_snr) betas_ = detail::rescale_zero_terminal_snr<T>(betas_);
    for (std::size_t i = 0; i < betas_.size(); ++i)
      require(std::isfinite(betas_[i]) && betas_[i] > T(0) && betas_[i] <= T(1), "betas: beta[", i, "] = ",
              betas_[i], " is outside (0, 1]");
    alphas_ = detail::one_minus<T>(betas_);
    alphas_cumprod_ = numerics::torch_cumprod<T>(alphas_);
  }

  const ScheduleConfig& config() const { return config_; }
  index_t num_train_timesteps() const { return static_cast<index_t>(betas_.size()); }
  std::span<const T> betas() const { return betas_; }
  std::span<const T> alphas() const { return alphas_; }
  std::span<const T> alphas_cumprod() const { return alphas_cumprod_; }

  T beta(index_t t) const { return betas_[checked(t)]; }
  T alpha(index_t t) const { return alphas_[checked(t)]; }
  T alpha_cumprod(index_t t) const { return alphas_cumprod_[checked(t)]; }
  // alpha-bar at a previous timestep; s < 0 means "before the first step"
  // and gives `final` (1 in DDPM, set_alpha_to_one in DDIM).
  T alpha_cumprod_or(index_t s, T final) const { return s < 0 ? final : alpha_cumprod(s); }

  T sqrt_alpha_cumprod(index_t t) const { return std::sqrt(alpha_cumprod(t)); }
  T sqrt_one_minus_alpha_cumprod(index_t t) const { return std::sqrt(T(1) - alpha_cumprod(t)); }
  // Signal-to-noise ratio alpha-bar / (1 - alpha-bar) (Kingma et al. 2021); 0 at a zero-SNR end.
  T snr(index_t t) const { return alpha_cumprod(t) / (T(1) - alpha_cumprod(t)); }
  // The noise level of the variance-exploding view: sigma = sqrt((1 - abar) / abar).
  T sigma(index_t t) const { return std::sqrt((T(1) - alpha_cumprod(t)) / alpha_cumprod(t)); }

  // Eq. 7 for the one-step posterior q(x_{t-1} | x_t, x_0).
  PosteriorCoefficients<T> posterior_mean_coefficients(index_t t) const {
    return ddpm::posterior_mean_coefficients(alpha_cumprod(t), alpha_cumprod_or(t - 1, T(1)));
  }
  T posterior_variance(index_t t, VarianceType type = VarianceType::fixed_small) const {
    return ddpm::posterior_variance(alpha_cumprod(t), alpha_cumprod_or(t - 1, T(1)), type);
  }

  // DPM-Solver and Euler replace a zero terminal alpha-bar with 2^-24 so that
  // sigma stays finite (diffusers does this only in those schedulers).
  void clamp_terminal_alpha_cumprod() {
    if (config_.rescale_betas_zero_snr) alphas_cumprod_.back() = static_cast<T>(std::ldexp(1.0, -24));
  }

 private:
  std::size_t checked(index_t t) const {
    require(t >= 0 && t < num_train_timesteps(), "timestep: t = ", t, " is outside [0, ", num_train_timesteps(),
            ")");
    return static_cast<std::size_t>(t);
  }

  static void validate(const ScheduleConfig& c) {
    require(c.num_train_timesteps >= 1, "num_train_timesteps: must be >= 1, got ", c.num_train_timesteps);
    if (!c.trained_betas.empty()) {
      require(static_cast<index_t>(c.trained_betas.size()) == c.num_train_timesteps, "trained_betas: has ",
              c.trained_betas.size(), " values, num_train_timesteps is ", c.num_train_timesteps);
      return;
    }
    if (c.beta_schedule == BetaSchedule::squaredcos_cap_v2) return;  // beta_start / beta_end unused
    require(std::isfinite(c.beta_start) && c.beta_start > 0 && c.beta_start <= 1,
            "beta_start: must be in (0, 1], got ", c.beta_start);
    require(std::isfinite(c.beta_end) && c.beta_end > 0 && c.beta_end <= 1, "beta_end: must be in (0, 1], got ",
            c.beta_end);
    require(c.beta_start <= c.beta_end, "beta_start: must be <= beta_end, got beta_start = ", c.beta_start,
            ", beta_end = ", c.beta_end);
  }

  static std::vector<T> make_betas(const ScheduleConfig& c) {
    const index_t n = c.num_train_timesteps;
    if (!c.trained_betas.empty()) return {c.trained_betas.begin(), c.trained_betas.end()};
    switch (c.beta_schedule) {
      case BetaSchedule::linear: return numerics::torch_linspace<T>(c.beta_start, c.beta_end, n);
      case BetaSchedule::scaled_linear: {
        // Latent diffusion's schedule: linear in sqrt(beta).
        auto b = numerics::torch_linspace<T>(std::sqrt(c.beta_start), std::sqrt(c.beta_end), n);
        for (T& v : b) v = v * v;
        return b;
      }
      case BetaSchedule::squaredcos_cap_v2: {
        const auto d = detail::cosine_betas(n);
        return {d.begin(), d.end()};
      }
      case BetaSchedule::sigmoid: {
        // GeoDiff's schedule: sigmoid(linspace(-6, 6)) * (end - start) + start.
        auto b = numerics::torch_linspace<T>(-6.0, 6.0, n);
        const T range = static_cast<T>(c.beta_end - c.beta_start), start = static_cast<T>(c.beta_start);
        for (T& v : b) v = T(1) / (T(1) + std::exp(-v)) * range + start;
        return b;
      }
    }
    fail("beta_schedule: unknown value");
  }

  ScheduleConfig config_;
  std::vector<T> betas_, alphas_, alphas_cumprod_;
};

}  // namespace ddpm
