// The samplers and the loop against independent references: with the exact
// epsilon of a one-point data distribution, DDIM (eta = 0), DPM-Solver++ and
// Euler must land on that point; noise handling; and one test per error path.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/loop.hpp"

#include "support/random_tensor.hpp"

using namespace ddpm;

// The tests spell configs with designated initializers naming only the fields
// that differ from the defaults; the rest keep their default member initializers.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
using Catch::Matchers::Contains;

namespace {

using test::randn;

// For data concentrated at x0, the ideal epsilon model at integer t is
// (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t); Euler's timesteps may be fractional,
// where the ideal model is (x_in * sqrt(sigma^2 + 1) - x0) / sigma with the
// sampler's own sigma, so the Euler test supplies that one.
struct PointModel {
  const NoiseSchedule<double>* s;
  const Tensor<double>* x0;
  Tensor<double> out;
  ConstTensorView<double> operator()(ConstTensorView<double> x, double t) {
    const auto ti = static_cast<index_t>(t);
    const double a = s->sqrt_alpha_cumprod(ti), b = s->sqrt_one_minus_alpha_cumprod(ti);
    out.resize(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) out[i] = (x[i] - a * (*x0)[i]) / b;
    return out.cview();
  }
};

template <class S>
Tensor<double> run_to_point(S& sampler, const Tensor<double>& x0) {
  PointModel m{&sampler.schedule(), &x0, {}};
  const Tensor<double> noise = randn(x0.shape(), 7);
  return sample_loop(sampler, m, noise.cview());
}

double max_abs_diff(const Tensor<double>& a, const Tensor<double>& b) {
  double d = 0;
  for (index_t i = 0; i < a.numel(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

}  // namespace

TEST_CASE("DDIM eta = 0 with the true epsilon of a single point recovers it", "[sampling]") {
  const Tensor<double> x0 = randn({2, 3, 4, 4}, 1);
  for (auto spacing : {TimestepSpacing::leading, TimestepSpacing::trailing}) {
    DDIMSampler<double> ddim(DDIMConfig{.clipping = {}, .timesteps = {spacing, 0}});
    ddim.set_timesteps(25);
    CHECK(max_abs_diff(run_to_point(ddim, x0), x0) < 1e-9);
  }
}

TEST_CASE("DPM-Solver++ 2M (midpoint, heun, order 1) with the true epsilon of a point recovers it", "[sampling]") {
  const Tensor<double> x0 = randn({1, 2, 3, 3}, 2);
  for (int order : {1, 2})
    for (auto type : {DPMSolverType::midpoint, DPMSolverType::heun}) {
      DPMSolverSampler<double> dpm(DPMSolverConfig{.solver_order = order, .solver_type = type});
      dpm.set_timesteps(20);
      // sigmas are float32 (as diffusers stores them): the model uses the schedule's exact ones.
      CHECK(max_abs_diff(run_to_point(dpm, x0), x0) < 1e-5);
    }
}

TEST_CASE("Euler with the true epsilon of a point recovers it", "[sampling]") {
  const Tensor<double> x0 = randn({1, 1, 4, 4}, 3);
  EulerSampler<double> euler;
  euler.set_timesteps(30);
  Tensor<double> out;
  index_t step = 0;
  auto model = [&](ConstTensorView<double> x, double) -> ConstTensorView<double> {
    const double sigma = euler.sigmas()[static_cast<std::size_t>(step++)];
    out.resize(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) out[i] = (x[i] * std::sqrt(sigma * sigma + 1) - x0[i]) / sigma;
    return out.cview();
  };
  const Tensor<double> noise = randn(x0.shape(), 9);
  CHECK(max_abs_diff(sample_loop(euler, model, noise.cview()), x0) < 1e-9);
}

TEST_CASE("DDPM: noise only for t > 0, from an Rng or the caller, reproducible", "[sampling]") {
  DDPMSampler<double> ddpm;
  const Tensor<double> x = randn({1, 2, 2, 2}, 1), m = randn({1, 2, 2, 2}, 2), z = randn({1, 2, 2, 2}, 3);
  CHECK_NOTHROW(ddpm.step(m.cview(), 0, x.cview()));  // t = 0 draws nothing
  CHECK_THROWS_WITH(ddpm.step(m.cview(), 5, x.cview()), Contains("variance noise"));
  Rng r1(42), r2(42);
  const Tensor<double> a = Tensor<double>::copy_of(ddpm.step(m.cview(), 5, x.cview(), r1).prev_sample);
  const Tensor<double> b = Tensor<double>::copy_of(ddpm.step(m.cview(), 5, x.cview(), r2).prev_sample);
  CHECK(max_abs_diff(a, b) == 0);
  // Caller-supplied noise: prev = mu~ + sqrt(beta~) z (eq. 6, 7).
  const StepOutput<double> o = ddpm.step(m.cview(), 5, x.cview(), z.cview());
  const auto& s = ddpm.schedule();
  const auto c = s.posterior_mean_coefficients(5);
  for (index_t i = 0; i < x.numel(); ++i) {
    const double x0 = std::clamp((x[i] - s.sqrt_one_minus_alpha_cumprod(5) * m[i]) / s.sqrt_alpha_cumprod(5), -1.0, 1.0);
    CHECK(o.pred_original_sample[i] == Approx(x0));
    CHECK(o.prev_sample[i] == Approx(c.x0 * x0 + c.xt * x[i] + std::sqrt(s.posterior_variance(5)) * z[i]));
  }
  ddpm.set_timesteps(10);
  CHECK(ddpm.previous_timestep(900) == 800);
  CHECK(ddpm.previous_timestep(0) == -1);
}

TEST_CASE("the loop calls progress once per step, with or without the sample", "[sampling]") {
  DDIMSampler<float> ddim;
  ddim.set_timesteps(5);
  Tensor<float> noise({1, 1, 2, 2}, 0.5f);
  auto model = [](ConstTensorView<float> x, double) { return Tensor<float>::zeros_like(x); };
  std::vector<index_t> seen;
  sample_loop(ddim, model, noise.cview(), {}, [&](index_t i, index_t n, double t) {
    CHECK(n == 5);
    CHECK(t == ddim.timesteps()[static_cast<std::size_t>(i)]);
    seen.push_back(i);
  });
  CHECK(seen == std::vector<index_t>{0, 1, 2, 3, 4});
  int calls = 0;
  sample_loop(ddim, model, noise.cview(), {}, [&](index_t, index_t, double, ConstTensorView<float> x) {
    CHECK(x.numel() == 4);
    ++calls;
  });
  CHECK(calls == 5);
  static_assert(Sampler<DDPMSampler<float>> && Sampler<DDIMSampler<double>> && Sampler<DPMSolverSampler<float>> &&
                Sampler<EulerSampler<double>>);
}

TEST_CASE("sampler errors name the parameter", "[sampling]") {
  const Tensor<double> x = randn({1, 2, 2, 2}, 1), m3 = randn({1, 3, 2, 2}, 2);
  DDPMSampler<double> ddpm;
  CHECK_THROWS_WITH(ddpm.step(m3.cview(), 10, x.cview()), Contains("model_output vs sample"));
  CHECK_THROWS_WITH(ddpm.step(x.cview(), 1000, x.cview()), Contains("timestep"));
  CHECK_THROWS_WITH(ddpm.step(x.cview(), 2.5, x.cview()), Contains("timestep"));
  CHECK_THROWS_WITH(ddpm.set_timesteps(0), Contains("num_inference_steps"));
  CHECK_THROWS_WITH(ddpm.set_timesteps(1001), Contains("num_inference_steps"));
  // Zero terminal SNR + epsilon: x_0 is infinite at the last training timestep.
  DDPMSampler<double> zsnr(DDPMConfig{.schedule = {.rescale_betas_zero_snr = true}});
  Rng rng(1);
  CHECK_THROWS_WITH(zsnr.step(x.cview(), 999, x.cview(), rng), Contains("alphas_cumprod = 0"));
  DDPMSampler<double> zsnr_v(DDPMConfig{.schedule = {.rescale_betas_zero_snr = true},
                                        .prediction_type = PredictionType::v_prediction});
  CHECK_NOTHROW(zsnr_v.step(x.cview(), 999, x.cview(), rng));

  DDIMSampler<double> ddim;
  CHECK_THROWS_WITH(ddim.step(x.cview(), 10, x.cview()), Contains("set_timesteps"));
  CHECK_THROWS_WITH(DDIMSampler<double>(DDIMConfig{.eta = -1}), Contains("eta"));
  DPMSolverSampler<double> dpm;
  CHECK_THROWS_WITH(dpm.step(x.cview(), 10, x.cview()), Contains("set_timesteps"));
  dpm.set_timesteps(10);
  CHECK_THROWS_WITH(dpm.step(x.cview(), 7, x.cview()), Contains("not one of the sampler's timesteps"));
  CHECK_THROWS_WITH(DPMSolverSampler<double>(DPMSolverConfig{.solver_order = 4}), Contains("solver_order"));
  DPMSolverSampler<double> sde(DPMSolverConfig{.algorithm_type = DPMSolverAlgorithm::sde_dpmsolver_pp});
  sde.set_timesteps(10);
  CHECK_THROWS_WITH(sde.step(x.cview(), sde.timesteps()[0], x.cview()), Contains("stochastic"));
  EulerAncestralSampler<double> euler_a;
  euler_a.set_timesteps(5);
  CHECK_THROWS_WITH(euler_a.step(x.cview(), euler_a.timesteps()[0], x.cview()), Contains("stochastic"));
  CHECK_THROWS_WITH(euler_a.set_timesteps(0), Contains("num_inference_steps"));
  CHECK_THROWS_WITH(DDIMInverseSampler<double>(DDIMInverseConfig{.timesteps = {TimestepSpacing::linspace, 0}}),
                    Contains("timestep_spacing") && Contains("linspace"));
  DDIMInverseSampler<double> inverse;
  CHECK_THROWS_WITH(inverse.step(x.cview(), 10, x.cview()), Contains("set_timesteps"));
  inverse.set_timesteps(4);
  CHECK(std::vector<double>(inverse.timesteps().begin(), inverse.timesteps().end()) ==
        std::vector<double>{0, 250, 500, 750});
  CHECK_THROWS_WITH(inverse.step(x.cview(), 1000, x.cview()), Contains("timestep"));
  KDPM2Sampler<double> kdpm2;
  kdpm2.set_timesteps(4);
  CHECK(kdpm2.timesteps().size() == 7);  // t_0, then per interval the midpoint's timestep and t_{i+1}
  CHECK(kdpm2.sigmas().size() == 10);
  HeunSampler<double> heun;
  heun.set_timesteps(3);
  CHECK(heun.timesteps().size() == 5);  // 2n - 1: each inner timestep twice
  CHECK(heun.sigmas().size() == 6);
  CHECK_THROWS_WITH(heun.set_timesteps(1001), Contains("num_inference_steps"));
  EulerSampler<double> euler;
  CHECK_THROWS_WITH(euler.init_noise_sigma(), Contains("set_timesteps"));
  CHECK_THROWS_WITH(DDPMSampler<double>(DDPMConfig{.clipping = {.clip_sample = true, .clip_sample_range = -1}}),
                    Contains("clip_sample_range"));
}

TEST_CASE("scheduler_config.json: defaults, dispatch and errors naming key and value", "[sampling][io]") {
  using nlohmann::json;
  auto read = [](const std::string& text) { return io::scheduler_config_from_json(io::parse_python_json(text), "f.json"); };
  // Missing keys take diffusers' defaults.
  const SamplerConfig ddim = read(R"({"_class_name": "DDIMScheduler"})");
  REQUIRE(std::holds_alternative<DDIMConfig>(ddim));
  CHECK(std::get<DDIMConfig>(ddim).clipping.clip_sample);
  CHECK(std::get<DDIMConfig>(ddim).set_alpha_to_one);
  const SamplerConfig dpm = read(R"({"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity})");
  CHECK(std::get<DPMSolverConfig>(dpm).timesteps.spacing == TimestepSpacing::linspace);
  CHECK(std::isinf(std::get<DPMSolverConfig>(dpm).lambda_min_clipped));
  CHECK(std::get<DDPMConfig>(read(R"({"_class_name": "DDPMScheduler", "predict_epsilon": false})")).prediction_type ==
        PredictionType::sample);

  CHECK_THROWS_WITH(read(R"({"_class_name": "PNDMScheduler"})"), Contains("PNDMScheduler") && Contains("f.json"));
  CHECK_THROWS_WITH(read(R"({"beta_start": 0.1})"), Contains("_class_name"));
  // Karras / exponential sigmas: one at a time, only where diffusers has them, no custom bounds.
  CHECK(std::get<EulerConfig>(read(R"({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true})"))
            .sigma_spacing == SigmaSpacing::karras);
  CHECK_THROWS_WITH(read(R"({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true,
                             "use_exponential_sigmas": true})"),
                    Contains("f.json") && Contains("use_exponential_sigmas") && Contains("use_karras_sigmas"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "EulerDiscreteScheduler", "use_beta_sigmas": true})"),
                    Contains("f.json") && Contains("use_beta_sigmas") && Contains("true"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true, "sigma_min": 0.1})"),
                    Contains("f.json") && Contains("sigma_min") && Contains("0.1"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDPMScheduler", "use_karras_sigmas": true})"),
                    Contains("f.json") && Contains("use_karras_sigmas") && Contains("true"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "EulerAncestralDiscreteScheduler", "prediction_type": "sample"})"),
                    Contains("f.json") && Contains("prediction_type") && Contains("sample"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDIMInverseScheduler", "timestep_spacing": "linspace"})"),
                    Contains("f.json") && Contains("timestep_spacing") && Contains("linspace"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDIMInverseScheduler", "use_karras_sigmas": true})"),
                    Contains("f.json") && Contains("use_karras_sigmas"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "KDPM2DiscreteScheduler", "prediction_type": "sample"})"),
                    Contains("f.json") && Contains("prediction_type") && Contains("sample"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "KDPM2DiscreteScheduler", "use_beta_sigmas": true})"),
                    Contains("f.json") && Contains("use_beta_sigmas"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "HeunDiscreteScheduler", "rescale_betas_zero_snr": true})"),
                    Contains("f.json") && Contains("rescale_betas_zero_snr"));
  CHECK(std::get<HeunConfig>(read(R"({"_class_name": "HeunDiscreteScheduler", "use_exponential_sigmas": true})"))
            .sigma_spacing == SigmaSpacing::exponential);
  CHECK_THROWS_WITH(read(R"({"_class_name": "EulerAncestralDiscreteScheduler", "use_karras_sigmas": true})"),
                    Contains("f.json") && Contains("use_karras_sigmas"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver"})"),
                    Contains("algorithm_type") && Contains("sde-dpmsolver"));
  CHECK(std::get<DPMSolverConfig>(read(R"({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3,
                                          "use_karras_sigmas": true})"))
            .sigma_spacing == SigmaSpacing::karras);
  CHECK_THROWS_WITH(read(R"({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 4})"),
                    Contains("f.json") && Contains("solver_order") && Contains("4"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3,
                             "algorithm_type": "sde-dpmsolver++"})"),
                    Contains("f.json") && Contains("solver_order") && Contains("sde-dpmsolver++"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DPMSolverMultistepScheduler", "use_lu_lambdas": true})"),
                    Contains("f.json") && Contains("use_lu_lambdas"));
  CHECK_THROWS_WITH(DPMSolverSampler<float>(DPMSolverConfig{.algorithm_type = DPMSolverAlgorithm::sde_dpmsolver_pp,
                                                            .solver_order = 3}),
                    Contains("solver_order"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DPMSolverMultistepScheduler", "variance_type": "learned_range"})"),
                    Contains("variance_type"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "EulerDiscreteScheduler", "interpolation_type": "log_linear"})"),
                    Contains("interpolation_type") && Contains("log_linear"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDPMScheduler", "beta_schedule": "cosine"})"),
                    Contains("beta_schedule") && Contains("cosine"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDPMScheduler", "variance_type": "learned"})"),
                    Contains("variance_type") && Contains("learned"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDPMScheduler", "clip_sample": "yes"})"),
                    Contains("clip_sample") && Contains("true or false"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDPMScheduler", "num_train_timesteps": 0})"),
                    Contains("num_train_timesteps"));
  CHECK_THROWS_WITH(read(R"({"_class_name": "DDIMScheduler", "use_karras_sigmas": false})"),
                    Contains("use_karras_sigmas"));  // unknown for DDIM
  CHECK_THROWS_WITH(io::parse_python_json("{", "g.json"), Contains("g.json"));

  SamplerConfig e = read(R"({"_class_name": "EulerDiscreteScheduler"})");
  io::apply_step_kwargs(e, json{{"s_churn", 0.5}});
  CHECK(std::get<EulerConfig>(e).s_churn == 0.5);
  CHECK_THROWS_WITH(io::apply_step_kwargs(e, json{{"eta", 0.5}}), Contains("eta"));
}
