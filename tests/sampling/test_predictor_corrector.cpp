// Langevin correction and predictor-corrector sampling against closed forms:
// Gaussian data N(0, s^2 I), whose exact noise prediction at level abar is
//   eps(x, t) = sqrt(1 - abar) x / (abar s^2 + 1 - abar)
// and whose VE score at sigma is -x / (s^2 + sigma^2). Langevin steps at a
// fixed level must drive the sample variance to abar s^2 + 1 - abar (times the
// discretisation factor of the snr step, see below) from a wrong start;
// predictor-corrector loops must end at variance s^2; the VE adapter must give
// the direct score. Plus ScoreSdeVe's config file and error paths.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/io/score_sde_ve_config.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/langevin.hpp"
#include "ddpm/sampling/predictor_corrector.hpp"
#include "ddpm/sampling/score_sde_ve.hpp"
#include "ddpm/sampling/ve_score.hpp"

#include "support/random_tensor.hpp"

using namespace ddpm;
using Catch::Matchers::Contains;

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace {

using test::randn;

constexpr double kS = 0.5;  // data standard deviation

// sigma(t) by linear interpolation of log sigma between training timesteps: the
// exact inverse of sigma_to_t (diffusers' _sigma_to_t).
double sigma_at(const NoiseSchedule<double>& s, double t) {
  const auto table = training_sigmas(s);
  const auto lo = static_cast<std::size_t>(std::floor(t));
  if (lo + 1 >= table.size()) return table.back();
  const double w = t - static_cast<double>(lo);
  return std::exp((1 - w) * std::log(table[lo]) + w * std::log(table[lo + 1]));
}

// The exact prediction for N(0, s^2 I) data; abar at integer t from the
// schedule, at fractional t from sigma_at.
struct GaussModel {
  const NoiseSchedule<double>* s;
  PredictionType type = PredictionType::epsilon;
  int calls = 0;
  Tensor<double> out;
  double abar(double t) const {
    if (t == std::floor(t)) return s->alpha_cumprod(static_cast<index_t>(t));
    const double sig = sigma_at(*s, t);
    return 1 / (1 + sig * sig);
  }
  ConstTensorView<double> operator()(ConstTensorView<double> x, double t) {
    ++calls;
    const double ab = abar(t), a = std::sqrt(ab), b = std::sqrt(1 - ab), v = ab * kS * kS + 1 - ab;
    out.resize(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) {
      const double eps = b * x[i] / v, x0 = a * kS * kS * x[i] / v;
      out[i] = type == PredictionType::epsilon ? eps : a * eps - b * x0;  // v = a eps - b x0
    }
    return out.cview();
  }
};

double variance(ConstTensorView<double> x) {
  double m = 0, q = 0;
  for (double v : x) m += v;
  m /= static_cast<double>(x.numel());
  for (double v : x) q += (v - m) * (v - m);
  return q / static_cast<double>(x.numel() - 1);
}

// The snr step eps = 2 (snr |z| / |g|)^2 leaves the discrete chain
// x' = (1 - eps / v) x + sqrt(2 eps) z with stationary variance r v, r = 1 + snr^2
// (solve r = 1 / (1 - snr^2 / r) with eps / v = 2 snr^2 / r in high dimension).
double stationary_factor(double snr) { return 1 + snr * snr; }

const Shape kShape{64, 1, 16, 16};  // 16384 values: the sample variance has a relative sd of ~1.1%

}  // namespace

TEST_CASE("Langevin steps at a fixed level restore the Gaussian variance (VP and VE samplers, eps and v)",
          "[sampling][langevin]") {
  const ScheduleConfig sc;
  const NoiseSchedule<double> sched(sc);
  const double t = 300, ab = sched.alpha_cumprod(300), v = ab * kS * kS + 1 - ab;
  const double snr = 0.15, r = stationary_factor(snr);
  for (PredictionType type : {PredictionType::epsilon, PredictionType::v_prediction}) {
    for (double start : {4.0, 0.25}) {  // the starting variance, in units of the right one
      INFO(to_string(type) << ", start variance " << start << " x " << v);
      DDIMSampler<double> ddim(DDIMConfig{.prediction_type = type, .clipping = {.clip_sample = false}});
      ddim.set_timesteps(10);
      GaussModel model{&sched, type};
      Tensor<double> x = randn(kShape, 1);
      for (double& e : x.span()) e *= std::sqrt(start * v);
      Rng rng(2);
      LangevinCorrector<double> langevin({.snr = snr, .correct_steps = 150});
      langevin.correct(ddim, model, x.view(), t, NoiseSource<double>(rng));
      CHECK(model.calls == 150);
      const double got = variance(x.cview());
      INFO("variance " << got << ", expected " << r * v);
      CHECK(std::abs(got / (r * v) - 1) < 0.04);
      // A wrong score scale (-eps instead of -eps / sqrt(1 - abar)) targets variance v sqrt(1 - abar): 23% off here.
      CHECK(std::abs(std::sqrt(1 - ab) - 1) > 0.2);

      // A variance-exploding sampler holds x_ve = x_vp / sqrt(abar): variance (s^2 + sigma^2).
      EulerSampler<double> euler(EulerConfig{.prediction_type = type, .timesteps = {TimestepSpacing::leading, 0}});
      euler.set_timesteps(10);
      GaussModel m2{&sched, type};
      Tensor<double> y = randn(kShape, 3);
      for (double& e : y.span()) e *= std::sqrt(start * v / ab);
      langevin.correct(euler, m2, y.view(), t, NoiseSource<double>(rng));
      const double got_ve = variance(y.cview());
      INFO("VE variance " << got_ve << ", expected " << r * v / ab);
      CHECK(std::abs(got_ve / (r * v / ab) - 1) < 0.04);
    }
  }
}

TEST_CASE("the Langevin step: step size and update by hand, and its equivariance under rescaling",
          "[sampling][langevin]") {
  // Batch of 2, 3 values each; g = score, z = noise.
  const Tensor<double> x = randn({2, 3}, 5), g = randn({2, 3}, 6), z = randn({2, 3}, 7);
  const auto norm = [](const Tensor<double>& a, index_t b) {
    return std::sqrt(a[3 * b] * a[3 * b] + a[3 * b + 1] * a[3 * b + 1] + a[3 * b + 2] * a[3 * b + 2]);
  };
  const double gn = (norm(g, 0) + norm(g, 1)) / 2, zn = (norm(z, 0) + norm(z, 1)) / 2;
  const double eps = 2 * (0.2 * zn / gn) * (0.2 * zn / gn);
  CHECK(langevin_step_size<double>(g.cview(), z.cview(), 0.2) == Approx(eps).epsilon(1e-14));
  Tensor<double> out({2, 3}), mean({2, 3});
  langevin_update<double>(x.cview(), g.cview(), z.cview(), eps, out.view(), mean.view());
  for (index_t k = 0; k < 6; ++k) {
    CHECK(mean[k] == Approx(x[k] + eps * g[k]).epsilon(1e-14));
    CHECK(out[k] == Approx(x[k] + eps * g[k] + std::sqrt(2 * eps) * z[k]).epsilon(1e-14));
  }
  // x -> 3 x, g -> g / 3: the step scales by 3.
  Tensor<double> x3 = x, g3 = g, out3({2, 3});
  for (index_t k = 0; k < 6; ++k) x3[k] *= 3, g3[k] /= 3;
  const double eps3 = langevin_step_size<double>(g3.cview(), z.cview(), 0.2);
  CHECK(eps3 == Approx(9 * eps).epsilon(1e-12));
  langevin_update<double>(x3.cview(), g3.cview(), z.cview(), eps3, out3.view());
  for (index_t k = 0; k < 6; ++k) CHECK(out3[k] == Approx(3 * out[k]).epsilon(1e-12));
  CHECK_THROWS_WITH(langevin_step_size<double>(Tensor<double>({2, 3}, 0.0).cview(), z.cview(), 0.2),
                    Contains("score"));
}

TEST_CASE("predictor-corrector sampling with any sampler ends at the data variance from a wrong start",
          "[sampling][langevin]") {
  const NoiseSchedule<double> sched(ScheduleConfig{});
  // x_T three times too wide: the deterministic samplers carry the error to x_0, the corrector removes it.
  Tensor<double> noise = randn(kShape, 11);
  for (double& e : noise.span()) e *= 3;
  const index_t steps = 10;
  for (const char* name : {"ddim", "euler", "heun", "kdpm2", "ddpm", "euler-a", "dpm++"}) {
    INFO(name);
    const std::string n(name);
    SamplerConfig c = sampler_config_named(name);
    std::visit(
        [](auto& k) {
          if constexpr (requires { k.clipping; }) k.clipping.clip_sample = false;
          k.timesteps = {TimestepSpacing::leading, 0};  // integer timesteps, where GaussModel is exact
        },
        c);
    const auto run = [&](index_t correct_steps, std::uint64_t seed, int* calls = nullptr) {
      AnySampler<double> s = make_sampler<double>(c);
      set_timesteps(s, steps);
      GaussModel model{&sched};
      Rng rng(seed);
      const auto x = sample_loop_pc(s, model, noise.cview(), NoiseSource<double>(rng),
                                    LangevinConfig{.snr = 0.15, .correct_steps = correct_steps});
      if (calls) *calls = model.calls;
      return x;
    };
    int calls = 0;
    const Tensor<double> x = run(40, 12, &calls);
    const bool second_order = n == "heun" || n == "kdpm2";
    CHECK(calls == (second_order ? 2 * steps - 1 : steps) + 40 * (steps - 1));
    const double got = variance(x.cview());
    INFO("variance " << got << " vs s^2 = " << kS * kS);
    // DPM-Solver++ is multistep: its history holds the model outputs of the uncorrected samples, and the
    // corrector's moves enter its extrapolation (D0 - D1) amplified (variance 0.76 s^2 here; 1.2 s^2 with
    // 5 Langevin steps a level at 50 steps). The corrector runs with it, without that guarantee.
    if (n != "dpm++") CHECK(std::abs(got / (kS * kS) - 1) < 0.06);
    if (n != "ddpm" && n != "euler-a" && n != "dpm++") {  // ancestral noise partly repairs the start
      const double plain = variance(run(0, 12).cview());
      INFO("without the corrector: " << plain);
      CHECK(plain > 2 * kS * kS);
    }
    // Reproducible from the seed; another seed differs.
    const Tensor<double> again = run(40, 12), other = run(40, 13);
    CHECK(std::equal(x.begin(), x.end(), again.begin()));
    CHECK(!std::equal(x.begin(), x.end(), other.begin()));
  }
}

TEST_CASE("the VE adapter gives the direct score -x / (s^2 + sigma^2) of a VP model, eps and v", "[sampling][ve_score]") {
  const NoiseSchedule<double> sched(ScheduleConfig{});
  const Tensor<double> x = randn({3, 2, 4}, 21);
  for (PredictionType type : {PredictionType::epsilon, PredictionType::v_prediction}) {
    auto score = ve_score_from_prediction<double>(GaussModel{&sched, type}, sched, type);
    for (double sigma : {0.0123, 0.3, 1.0, 7.77, 60.0, 150.0}) {
      INFO(to_string(type) << " sigma " << sigma);
      const std::vector<double> sig(3, sigma);
      const ConstTensorView<double> got = score(x.cview(), sig);
      for (index_t k = 0; k < x.numel(); ++k) CHECK(got[k] == Approx(-x[k] / (kS * kS + sigma * sigma)).epsilon(1e-10));
    }
  }
  // Its sigma range is the schedule's (0.01 .. 157 for diffusers' linear betas), not ScoreSdeVe's 1348.
  const ScoreSdeVeConfig c = ve_score_config(sched);
  CHECK(c.sigma_min == Approx(std::sqrt(1e-4 / (1 - 1e-4))).epsilon(1e-6));
  CHECK(c.sigma_max == Approx(training_sigmas(sched).back()));
  CHECK(c.sigma_max > 150);
  CHECK(c.sigma_max < 160);
  auto score = ve_score_from_prediction<double>(GaussModel{&sched}, sched);
  CHECK_THROWS_WITH(score(x.cview(), std::vector<double>{1.0, 2.0, 1.0}), Contains("one sigma"));
  CHECK_THROWS_WITH(score(x.cview(), std::vector<double>{1.0, 1.0}), Contains("2 sigmas for a batch of 3"));
}

TEST_CASE("ScoreSdeVe's predictor-corrector loop with a VP eps model (adapter) samples the Gaussian",
          "[sampling][score_sde_ve]") {
  const NoiseSchedule<double> sched(ScheduleConfig{});
  auto score = ve_score_from_prediction<double>(GaussModel{&sched}, sched);
  const Tensor<double> noise = randn(kShape, 31);
  std::vector<double> error;
  for (index_t correct : {1, 0}) {
    ScoreSdeVeScheduler<double> s(ve_score_config(sched, ScoreSdeVeConfig{.correct_steps = correct}));
    s.set_sigmas(100);
    Rng rng(32);
    int calls = 0;
    const Tensor<double> x = score_sde_ve_sample(s, score, noise.cview(), NoiseSource<double>(rng),
                                                 [&](const PCCall<double>&) { ++calls; });
    CHECK(calls == 100 * (1 + correct));
    const double got = variance(x.cview());
    error.push_back(std::abs(got / (kS * kS) - 1));
    INFO("correct_steps " << correct << ": variance " << got << " vs s^2 = " << kS * kS);
    if (correct > 0) CHECK(error.back() < 0.04);
  }
  // At 100 steps the predictor alone (Euler-Maruyama) is measurably off (11% here); the corrector repairs it.
  CHECK(error[1] > 0.06);
  // Started 3x too wide, the corrector brings it back; the predictor alone does not.
  Tensor<double> wide = noise;
  for (double& e : wide.span()) e *= 3;
  for (index_t correct : {20, 0}) {
    ScoreSdeVeScheduler<double> s(ve_score_config(sched, ScoreSdeVeConfig{.correct_steps = correct}));
    s.set_sigmas(30);
    Rng rng(33);
    const double got = variance(score_sde_ve_sample(s, score, wide.cview(), NoiseSource<double>(rng)).cview());
    INFO("wide start, correct_steps " << correct << ": variance " << got);
    if (correct > 0)
      CHECK(std::abs(got / (kS * kS) - 1) < 0.06);
    else
      CHECK(got > 1.25 * kS * kS);  // 1.43 s^2: the predictor's noise repairs part of the start
  }
}

TEST_CASE("ScoreSdeVe: schedule, config file round trip, one-line errors", "[sampling][score_sde_ve][errors]") {
  ScoreSdeVeScheduler<double> s;
  s.set_sigmas(5);
  REQUIRE(s.timesteps().size() == 5);
  CHECK(s.timesteps()[0] == 1.0);
  CHECK(s.timesteps()[4] == Approx(1e-5));
  CHECK(s.sigmas()[0] == Approx(1348.0));
  CHECK(s.discrete_sigmas()[0] == Approx(0.01));
  CHECK(s.discrete_sigmas()[4] == Approx(1348.0));
  CHECK(s.discrete_sigmas()[2] == Approx(std::sqrt(0.01 * 1348.0)));
  CHECK(s.init_noise_sigma() == 1348.0);
  // step_pred at the last timestep: j = 0, g = discrete_sigmas[0]; x_mean = x + g^2 score.
  const Tensor<double> x = randn({1, 4}, 41), m = randn({1, 4}, 42), z = randn({1, 4}, 43);
  const auto out = s.step_pred(m.cview(), s.timesteps()[4], x.cview(), NoiseSource<double>(z.cview()));
  const double g = s.discrete_sigmas()[0];
  for (index_t k = 0; k < 4; ++k) {
    CHECK(out.prev_sample_mean[k] == Approx(x[k] + g * g * m[k]).epsilon(1e-14));
    CHECK(out.prev_sample[k] == Approx(x[k] + g * g * m[k] + g * z[k]).epsilon(1e-14));
  }
  // At t = timesteps[1] (j = 3): g^2 = s_3^2 - s_2^2.
  const auto out1 = s.step_pred(m.cview(), s.timesteps()[1], x.cview(), NoiseSource<double>(z.cview()));
  const double g2 = std::pow(s.discrete_sigmas()[3], 2) - std::pow(s.discrete_sigmas()[2], 2);
  CHECK(out1.prev_sample_mean[0] == Approx(x[0] + g2 * m[0]).epsilon(1e-14));

  const ScoreSdeVeConfig c{.num_train_timesteps = 1000, .snr = 0.17, .sigma_min = 0.02, .sigma_max = 90.0,
                           .sampling_eps = 1e-3, .correct_steps = 2};
  const auto j = io::score_sde_ve_config_to_json(c);
  CHECK(j["_class_name"] == "ScoreSdeVeScheduler");
  CHECK(j["snr"] == 0.17);
  CHECK(j["correct_steps"] == 2);
  const ScoreSdeVeConfig back = io::score_sde_ve_config_from_json(j);
  CHECK(back.num_train_timesteps == 1000);
  CHECK(back.snr == 0.17);
  CHECK(back.sigma_min == 0.02);
  CHECK(back.sigma_max == 90.0);
  CHECK(back.sampling_eps == 1e-3);
  CHECK(back.correct_steps == 2);

  const auto read = [](const std::string& text) {
    return io::score_sde_ve_config_from_json(nlohmann::json::parse(text), "sched.json");
  };
  CHECK(read(R"({"_class_name": "ScoreSdeVeScheduler", "_diffusers_version": "0.40.0"})").sigma_max == 1348.0);
  CHECK_THROWS_WITH(read(R"({"_class_name": "ScoreSdeVeScheduler", "use_karras_sigmas": true})"),
                    Contains("sched.json") && Contains("use_karras_sigmas") && Contains("true"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "ScoreSdeVeScheduler", "snr": -1})"),
                    Contains("sched.json") && Contains("snr") && Contains("-1"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "ScoreSdeVeScheduler", "correct_steps": 1.5})"),
                    Contains("sched.json") && Contains("correct_steps") && Contains("1.5"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "ScoreSdeVeScheduler", "sigma_max": 0.001})"),
                    Contains("sched.json") && Contains("sigma_max") && Contains("0.001"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDIMScheduler"})"), Contains("sched.json") && Contains("DDIMScheduler"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "ScoreSdeVeScheduler", "snr": "high"})"),
                    Contains("snr") && Contains("a number"));

  ScoreSdeVeScheduler<double> fresh;
  CHECK_THROWS_WITH(fresh.step_pred(m.cview(), 1.0, x.cview(), NoiseSource<double>(z.cview())),
                    Contains("set_sigmas"));
  CHECK_THROWS_WITH(fresh.set_timesteps(1), Contains("num_inference_steps"));
  CHECK_THROWS_WITH(s.step_correct(m.cview(), x.cview()), Contains("noise"));  // stochastic: needs a noise source
  CHECK_THROWS_WITH(LangevinCorrector<double>({.snr = 0}), Contains("snr"));
  CHECK_THROWS_WITH(LangevinCorrector<double>({.snr = 0.1, .correct_steps = -1}), Contains("correct_steps"));
}
