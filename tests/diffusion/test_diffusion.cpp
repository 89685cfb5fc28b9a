// The diffusion math against independent references: closed forms in double
// (DDPM eq. 4, 7; v-prediction identities), NumPy's documented semantics,
// zero-SNR properties (Lin et al. 2023), and one test per error path.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/diffusion/forward_process.hpp"
#include "ddpm/diffusion/numerics.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/thresholding.hpp"
#include "ddpm/diffusion/timesteps.hpp"

#include "support/random_tensor.hpp"

using namespace ddpm;

// The tests spell configs with designated initializers naming only the fields
// that differ from the defaults; the rest keep their default member initializers.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
using Catch::Matchers::Contains;

namespace {
using test::randn;
}  // namespace

TEST_CASE("NumPy semantics: round half to even, linspace, arange", "[diffusion]") {
  CHECK(numerics::round_half_even(0.5) == 0);
  CHECK(numerics::round_half_even(1.5) == 2);
  CHECK(numerics::round_half_even(2.5) == 2);
  CHECK(numerics::round_half_even(-0.5) == 0);
  const auto l = numerics::np_linspace(0, 999, 4);
  CHECK(l == std::vector<double>{0, 333, 666, 999});
  CHECK(numerics::np_linspace(0, 5, 1) == std::vector<double>{0});
  CHECK(numerics::np_arange(1000, 0, -62.5).size() == 16);
  CHECK(numerics::np_arange(0, 1, 2).size() == 1);
}

TEST_CASE("torch.quantile semantics: linear interpolation between order statistics", "[diffusion]") {
  std::vector<double> v{4, 1, 3, 2};  // sorted 1 2 3 4, position q * 3
  CHECK(numerics::torch_quantile_inplace<double>(v, 0.5) == Approx(2.5));
  CHECK(numerics::torch_quantile_inplace<double>(v, 1.0) == 4);
  CHECK(numerics::torch_quantile_inplace<double>(v, 0.0) == 1);
}

TEST_CASE("linear schedule: endpoints, alphas_cumprod is the running product", "[diffusion]") {
  const NoiseSchedule<double> s;
  REQUIRE(s.num_train_timesteps() == 1000);
  CHECK(s.beta(0) == 0.0001);
  CHECK(s.beta(999) == Approx(0.02).epsilon(1e-15));
  long double prod = 1;
  for (index_t t = 0; t < 1000; ++t) {
    prod *= 1.0L - static_cast<long double>(s.beta(t));
    CHECK(s.alpha_cumprod(t) == Approx(static_cast<double>(prod)).epsilon(1e-13));
    CHECK(s.alpha(t) == 1 - s.beta(t));
  }
  const NoiseSchedule<float> f;
  CHECK(f.beta(0) == 0.0001f);
  CHECK(f.beta(999) == 0.02f);
}

TEST_CASE("SNR, sigma and the posterior of DDPM eq. 7 in closed form", "[diffusion]") {
  const NoiseSchedule<double> s(ScheduleConfig{.beta_schedule = BetaSchedule::scaled_linear});
  for (index_t t : {1, 10, 500, 999}) {
    const double abar = s.alpha_cumprod(t), abar_prev = s.alpha_cumprod(t - 1), beta = s.beta(t);
    CHECK(s.snr(t) == Approx(abar / (1 - abar)).epsilon(1e-14));
    CHECK(s.sigma(t) * s.sigma(t) == Approx(1 / s.snr(t)).epsilon(1e-12));
    const auto c = s.posterior_mean_coefficients(t);
    CHECK(c.x0 == Approx(std::sqrt(abar_prev) * beta / (1 - abar)).epsilon(1e-12));
    CHECK(c.xt == Approx(std::sqrt(1 - beta) * (1 - abar_prev) / (1 - abar)).epsilon(1e-12));
    CHECK(s.posterior_variance(t) == Approx((1 - abar_prev) / (1 - abar) * beta).epsilon(1e-12));
    CHECK(s.posterior_variance(t, VarianceType::fixed_large) == Approx(beta).epsilon(1e-12));
    CHECK(s.posterior_variance(t, VarianceType::fixed_small_log) == Approx(s.posterior_variance(t)).epsilon(1e-12));
  }
  // At t = 0 the posterior is x_0 itself: variance clamped to 1e-20, x0 coefficient 1.
  CHECK(s.posterior_variance(0) == 1e-20);
  CHECK(s.posterior_mean_coefficients(0).x0 == Approx(1.0));
  CHECK(s.posterior_mean_coefficients(0).xt == Approx(0.0).margin(1e-15));
}

TEST_CASE("cosine and sigmoid schedules", "[diffusion]") {
  const NoiseSchedule<double> cosine(ScheduleConfig{.beta_schedule = BetaSchedule::squaredcos_cap_v2});
  CHECK(cosine.beta(999) == 0.999);  // capped
  // Nichol & Dhariwal eq. 17: abar(t) = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) pi / 2)^2.
  auto f = [](double t) { return std::pow(std::cos((t / 1000 + 0.008) / 1.008 * M_PI / 2), 2); };
  CHECK(cosine.alpha_cumprod(499) == Approx(f(500) / f(0)).epsilon(1e-12));
  const NoiseSchedule<double> sig(ScheduleConfig{.beta_schedule = BetaSchedule::sigmoid});
  CHECK(sig.beta(0) == Approx(0.0001 + (0.02 - 0.0001) / (1 + std::exp(6.0))).epsilon(1e-12));
}

TEST_CASE("zero terminal SNR: last alphas_cumprod exactly 0, first unchanged", "[diffusion]") {
  for (auto sched : {BetaSchedule::linear, BetaSchedule::scaled_linear, BetaSchedule::squaredcos_cap_v2}) {
    const ScheduleConfig plain{.beta_schedule = sched};
    ScheduleConfig z = plain;
    z.rescale_betas_zero_snr = true;
    const NoiseSchedule<double> a(plain), b(z);
    CHECK(b.alpha_cumprod(999) == 0.0);
    CHECK(b.beta(999) == 1.0);
    CHECK(b.snr(999) == 0.0);
    CHECK(b.alpha_cumprod(0) == Approx(a.alpha_cumprod(0)).epsilon(1e-14));
    // sqrt(abar) is an affine map of the original one (Algorithm 1).
    const double s0 = std::sqrt(a.alpha_cumprod(0)), sT = std::sqrt(a.alpha_cumprod(999));
    CHECK(std::sqrt(b.alpha_cumprod(500)) ==
          Approx((std::sqrt(a.alpha_cumprod(500)) - sT) * s0 / (s0 - sT)).epsilon(1e-12));
    const NoiseSchedule<float> f(z);
    CHECK(f.alpha_cumprod(999) == 0.0f);
  }
  NoiseSchedule<double> clamped(ScheduleConfig{.rescale_betas_zero_snr = true});
  clamped.clamp_terminal_alpha_cumprod();
  CHECK(clamped.alpha_cumprod(999) == std::ldexp(1.0, -24));
}

TEST_CASE("schedule errors name the parameter", "[diffusion]") {
  CHECK_THROWS_WITH(NoiseSchedule<float>(ScheduleConfig{.num_train_timesteps = 0}), Contains("num_train_timesteps"));
  CHECK_THROWS_WITH(NoiseSchedule<float>(ScheduleConfig{.beta_start = 0}), Contains("beta_start"));
  CHECK_THROWS_WITH(NoiseSchedule<float>(ScheduleConfig{.beta_start = -1e-3}), Contains("beta_start"));
  CHECK_THROWS_WITH(NoiseSchedule<float>(ScheduleConfig{.beta_end = 1.5}), Contains("beta_end"));
  CHECK_THROWS_WITH(NoiseSchedule<float>(ScheduleConfig{.beta_start = 0.1, .beta_end = 0.01}),
                    Contains("beta_start") && Contains("beta_end"));
  CHECK_THROWS_WITH(NoiseSchedule<float>(ScheduleConfig{.beta_end = NAN}), Contains("beta_end"));
  CHECK_THROWS_WITH(NoiseSchedule<double>(ScheduleConfig{.num_train_timesteps = 3, .trained_betas = {0.1, 0.2}}),
                    Contains("trained_betas"));
  CHECK_THROWS_WITH(NoiseSchedule<double>(ScheduleConfig{.num_train_timesteps = 2, .trained_betas = {0.1, 0.0}}),
                    Contains("beta[1]"));
  CHECK_THROWS_WITH(NoiseSchedule<double>(ScheduleConfig{.num_train_timesteps = 2, .trained_betas = {0.1, 1.5}}),
                    Contains("(0, 1]"));
  CHECK_THROWS_WITH(NoiseSchedule<double>(ScheduleConfig{.num_train_timesteps = 1, .rescale_betas_zero_snr = true}),
                    Contains("rescale_betas_zero_snr"));
  CHECK_THROWS_WITH(parse_beta_schedule("cosine"), Contains("beta_schedule") && Contains("cosine"));
  CHECK_THROWS_WITH(parse_variance_type("learned"), Contains("variance_type"));
  const NoiseSchedule<double> s;
  CHECK_THROWS_WITH(s.alpha_cumprod(1000), Contains("t = 1000"));
  CHECK_THROWS_WITH(s.alpha_cumprod(-1), Contains("timestep"));
}

TEST_CASE("timestep spacings (Lin et al. 2023, Table 2) and their errors", "[diffusion]") {
  CHECK(spaced_timesteps(1000, 10) == std::vector<double>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0});
  CHECK(spaced_timesteps(1000, 10, {TimestepSpacing::leading, 1})[0] == 901);
  CHECK(spaced_timesteps(1000, 10, {TimestepSpacing::trailing, 0}) ==
        std::vector<double>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99});
  // Ties round to even: 937.5 -> 938, 812.5 -> 812.
  const auto tr = spaced_timesteps(1000, 16, {TimestepSpacing::trailing, 0});
  CHECK(tr[1] == 937);
  CHECK(tr[3] == 811);
  CHECK(spaced_timesteps(1000, 4, {TimestepSpacing::linspace, 0}) == std::vector<double>{999, 666, 333, 0});
  CHECK(dpm_solver_timesteps(1000, 4, {TimestepSpacing::linspace, 0}, 1000) ==
        std::vector<double>{999, 749, 500, 250});
  const auto e = euler_timesteps(1000, 4, {TimestepSpacing::linspace, 0});
  CHECK(e == std::vector<double>{999, 666, 333, 0});
  CHECK(euler_timesteps(1000, 3, {TimestepSpacing::linspace, 0})[1] == 499.5);
  CHECK_THROWS_WITH(spaced_timesteps(1000, 0), Contains("num_inference_steps"));
  CHECK_THROWS_WITH(spaced_timesteps(1000, 1001), Contains("num_inference_steps") && Contains("1001"));
  CHECK_THROWS_WITH(parse_timestep_spacing("uniform"), Contains("timestep_spacing"));
  CHECK_THROWS_WITH(discrete_timestep(2.5, 1000), Contains("timestep"));
}

TEST_CASE("q_sample then the epsilon conversion recovers x0; v identities", "[diffusion]") {
  const NoiseSchedule<double> s;
  const Tensor<double> x0 = randn({3, 2, 4, 4}, 1), eps = randn({3, 2, 4, 4}, 2);
  const std::vector<std::int64_t> ts{0, 500, 999};
  const Tensor<double> xt = q_sample(s, x0.cview(), ts, eps.cview());
  const Tensor<double> v = velocity(s, x0.cview(), eps.cview(), ts);
  const index_t per = x0.numel() / 3;
  for (index_t b = 0; b < 3; ++b) {
    const double a = s.sqrt_alpha_cumprod(ts[static_cast<std::size_t>(b)]);
    const double c = s.sqrt_one_minus_alpha_cumprod(ts[static_cast<std::size_t>(b)]);
    Tensor<double> rec({1, 2, 4, 4}), rec_v({1, 2, 4, 4}), rec_eps({1, 2, 4, 4});
    const auto xb = xt.cview().slice(b, 1), vb = v.cview().slice(b, 1), eb = eps.cview().slice(b, 1);
    predict_original_sample(PredictionType::epsilon, a, c, eb, xb, rec.view());
    predict_original_sample(PredictionType::v_prediction, a, c, vb, xb, rec_v.view());
    predict_epsilon(PredictionType::v_prediction, a, c, vb, xb, rec_v.cview(), rec_eps.view());
    for (index_t i = 0; i < per; ++i) {
      CHECK(rec[i] == Approx(x0[b * per + i]).margin(1e-12 / a));
      CHECK(rec_v[i] == Approx(x0[b * per + i]).margin(1e-12));
      CHECK(rec_eps[i] == Approx(eps[b * per + i]).margin(1e-12));
    }
  }
  // One timestep for the whole batch broadcasts.
  const std::vector<std::int64_t> one{250};
  CHECK(q_sample(s, x0.cview(), one, eps.cview())[per] ==
        Approx(s.sqrt_alpha_cumprod(250) * x0[per] + s.sqrt_one_minus_alpha_cumprod(250) * eps[per]));
}

TEST_CASE("forward process and prediction errors", "[diffusion]") {
  const NoiseSchedule<double> s;
  const Tensor<double> x0 = randn({2, 3}, 1), eps = randn({2, 4}, 2), eps_ok = randn({2, 3}, 3);
  const std::vector<std::int64_t> ts{1, 2}, three{1, 2, 3}, bad{1, 1000};
  CHECK_THROWS_WITH(q_sample(s, x0.cview(), ts, eps.cview()), Contains("shapes differ"));
  CHECK_THROWS_WITH(q_sample(s, x0.cview(), three, eps_ok.cview()), Contains("timesteps"));
  CHECK_THROWS_WITH(velocity(s, x0.cview(), eps_ok.cview(), bad), Contains("t = 1000"));
  Tensor<double> out({2, 3});
  CHECK_THROWS_WITH(predict_original_sample(PredictionType::epsilon, 0.0, 1.0, eps_ok.cview(), x0.cview(), out.view()),
                    Contains("alphas_cumprod = 0"));
  CHECK_THROWS_WITH(predict_original_sample(PredictionType::sample, 0.5, 0.5, eps.cview(), x0.cview(), out.view()),
                    Contains("model_output vs sample"));
  CHECK_THROWS_WITH(parse_prediction_type("x0"), Contains("prediction_type"));
}

TEST_CASE("clipping and dynamic thresholding (Imagen)", "[diffusion]") {
  std::vector<double> scratch;
  Tensor<double> x({2, 1, 2, 2}, std::span<const double>(std::vector<double>{0.5, -3, 2, 1, 0.1, -0.2, 0.3, 0.4}));
  Tensor<double> y = x;
  // ratio 1, sample_max_value 10: s = max|x| per batch element, clamped below at 1.
  threshold_sample(x.view(), 1.0, 10.0, scratch);
  CHECK(x[1] == -1.0);
  CHECK(x[0] == Approx(0.5 / 3));
  CHECK(x[4] == Approx(0.1));  // s = max(0.4, 1) = 1
  // With the default sample_max_value 1 it is clipping to [-1, 1].
  Tensor<double> z = y;
  threshold_sample(y.view(), 0.995, 1.0, scratch);
  clip_sample(z.view(), 1.0);
  for (index_t i = 0; i < y.numel(); ++i) CHECK(y[i] == z[i]);
  CHECK_THROWS_WITH((SampleClipping{.clip_sample = true, .clip_sample_range = 0}.validate()),
                    Contains("clip_sample_range"));
  CHECK_THROWS_WITH((SampleClipping{.thresholding = true, .dynamic_thresholding_ratio = 2}.validate()),
                    Contains("dynamic_thresholding_ratio"));
}

TEST_CASE("sigmas: sqrt((1 - abar) / abar) at the timesteps, then the final sigma", "[diffusion]") {
  const NoiseSchedule<double> s;
  const std::vector<double> ts{999, 500.5, 0};
  const auto sig = interpolated_sigmas(s, ts, FinalSigmasType::zero);
  REQUIRE(sig.size() == 4);
  CHECK(sig[0] == static_cast<double>(static_cast<float>(s.sigma(999))));
  CHECK(sig[1] == Approx((s.sigma(500) + s.sigma(501)) / 2).epsilon(1e-6));
  CHECK(sig[3] == 0);
  CHECK(interpolated_sigmas(s, ts, FinalSigmasType::sigma_min)[3] == Approx(s.sigma(0)).epsilon(1e-6));
  const auto as = alpha_sigma_from_sigma(s.sigma(300));
  CHECK(as.alpha == Approx(s.sqrt_alpha_cumprod(300)).epsilon(1e-12));
  CHECK(as.sigma == Approx(s.sqrt_one_minus_alpha_cumprod(300)).epsilon(1e-12));
  CHECK_THROWS_WITH(parse_final_sigmas_type("max"), Contains("final_sigmas_type"));
}
