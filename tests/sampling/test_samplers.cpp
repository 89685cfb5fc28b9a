// The samplers and the loop against independent references: with the exact
// epsilon of a one-point data distribution, DDIM (eta = 0), DPM-Solver++ and
// Euler must land on that point; noise handling; and one test per error path.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <utility>
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

namespace {

// Gaussian data N(0, s^2 I): along the probability-flow ODE x_bar = x / alpha
// (alpha = 1 / sqrt(sigma^2 + 1)) the exact epsilon is sigma x_bar / (s^2 + sigma^2),
// i.e. sqrt(1 - abar) x / (abar s^2 + 1 - abar), so x_bar grows as
// sqrt(s^2 + sigma^2) and the exact end point of a run from sigma_0 to sigma_f is
//   x_f = x_T * alpha_f sqrt(s^2 + sigma_f^2) / (alpha_0 sqrt(s^2 + sigma_0^2)).
// The model answers in the sampler's own sigmas (call k at sigmas[k]) and in
// any prediction type, converted from that epsilon.
struct GaussianOde {
  double s;
  PredictionType type;
  std::span<const double> sigmas;
  index_t call = 0;
  Tensor<double> out;
  ConstTensorView<double> operator()(ConstTensorView<double> x, double) {
    const double sigma = sigmas[static_cast<std::size_t>(call++)];
    const double alpha = 1 / std::sqrt(sigma * sigma + 1), sigma_t = sigma * alpha;
    out.resize(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) {
      const double eps = sigma * (x[i] / alpha) / (s * s + sigma * sigma);
      const double x0 = (x[i] - sigma_t * eps) / alpha;
      out[i] = type == PredictionType::epsilon ? eps : type == PredictionType::sample ? x0 : alpha * eps - sigma_t * x0;
    }
    return out.cview();
  }
};

// max |UniPC end point - exact ODE end point| / max |exact| for `c` with n steps.
double unipc_gaussian_error(const UniPCConfig& c, index_t n) {
  UniPCSampler<double> unipc(c);
  unipc.set_timesteps(n);
  const std::span<const double> sig = unipc.sigmas();
  const double s = 0.5;
  GaussianOde model{s, c.prediction_type, sig};
  const Tensor<double> noise = randn({2, 3, 4, 4}, 11);
  const Tensor<double> x = sample_loop(unipc, model, noise.cview());
  CHECK(model.call == n);
  const double s0 = sig.front(), sf = sig.back();
  const double gain = (std::sqrt(s * s + sf * sf) / std::sqrt(sf * sf + 1)) / (std::sqrt(s * s + s0 * s0) / std::sqrt(s0 * s0 + 1));
  double err = 0, ref = 0;
  for (index_t i = 0; i < x.numel(); ++i) {
    if (!std::isfinite(x[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(x[i] - gain * noise[i]));
    ref = std::max(ref, std::abs(gain * noise[i]));
  }
  return err / ref;
}

}  // namespace

TEST_CASE("UniPC with the exact epsilon of Gaussian data converges to the ODE solution at order p + 1",
          "[sampling][unipc]") {
  // Exponential sigmas are uniform steps in lambda = -log sigma, so doubling
  // the steps halves h everywhere: the error then falls by 2^(p + 1) for
  // UniPC-p (UniP-p plus the UniC corrector, Zhao et al. 2023, Thm. 3.1) and by
  // 2^p with the corrector disabled. Runs end at sigma_min: a last step to
  // sigma = 0 is first order whatever the order (error O(sigma_min^2 / s^2)).
  // Measured: x0 forms 4.5e-2 / 9.5e-3 / 7.9e-4 (bh2) at orders 1 / 2 / 3 with
  // 20 steps, rates 2.0 / 3.0 / 3.5; without the corrector rates 1.0 / 2.0.
  struct Variant {
    const char* what;
    UniPCConfig c;
    double tol_order3;  // at 20 steps
  };
  const auto sigma_min = FinalSigmasType::sigma_min;
  const auto exponential = SigmaSpacing::exponential;
  const Variant variants[] = {
      {"bh2, x0, epsilon", UniPCConfig{.final_sigmas_type = sigma_min, .sigma_spacing = exponential}, 1.5e-3},
      {"bh1, x0, sample prediction",
       UniPCConfig{.prediction_type = PredictionType::sample, .solver_type = UniPCSolverType::bh1,
                   .final_sigmas_type = sigma_min, .sigma_spacing = exponential}, 1.5e-3},
      {"bh2, eps form, v_prediction",
       UniPCConfig{.prediction_type = PredictionType::v_prediction, .predict_x0 = false,
                   .final_sigmas_type = sigma_min, .sigma_spacing = exponential}, 7e-3},
      {"bh1, eps form, epsilon, trailing",
       UniPCConfig{.solver_type = UniPCSolverType::bh1, .predict_x0 = false, .final_sigmas_type = sigma_min,
                   .timesteps = {TimestepSpacing::trailing, 0}, .sigma_spacing = exponential}, 7e-3},
  };
  auto rate = [](const UniPCConfig& c) {
    const double e20 = unipc_gaussian_error(c, 20), e40 = unipc_gaussian_error(c, 40);
    return std::pair{e20, std::log2(e20 / e40)};
  };
  for (const Variant& v : variants) {
    INFO(v.what);
    double err[4] = {};
    for (int order = 1; order <= 3; ++order) {
      UniPCConfig c = v.c;
      c.solver_order = order;
      const auto [e20, r] = rate(c);
      err[order] = e20;
      INFO("order " << order << ": relative error " << e20 << " at 20 steps, convergence rate " << r);
      CHECK(r > order + 0.5);
      if (order < 3) {  // without the corrector one order less
        for (index_t i = 0; i < 40; ++i) c.disable_corrector.push_back(i);
        const auto [e20_nc, r_nc] = rate(c);
        INFO("without the corrector: " << e20_nc << ", rate " << r_nc);
        CHECK(r_nc < order + 0.4);
        CHECK(e20_nc > e20);
      }
    }
    INFO("errors at orders 1, 2, 3: " << err[1] << ", " << err[2] << ", " << err[3]);
    CHECK(err[3] < v.tol_order3);
    CHECK(err[3] < err[2]);
    CHECK(err[3] < err[1]);  // (bh1 at order 2 need not beat order 1 at 20 steps; its rate is checked)
  }
}

TEST_CASE("UniPC: a step may take the previous step's prev_sample view as its sample", "[sampling][unipc]") {
  // The predictor overwrites the buffer prev_sample points into: the step must
  // have read `sample` (x_0 of the eps form included) before that.
  for (bool predict_x0 : {true, false}) {
    INFO("predict_x0 " << predict_x0);
    const UniPCConfig c{.solver_order = 3, .predict_x0 = predict_x0, .final_sigmas_type = FinalSigmasType::sigma_min};
    UniPCSampler<double> by_view(c), by_copy(c);
    by_view.set_timesteps(6);
    by_copy.set_timesteps(6);
    const Tensor<double> m = randn({1, 2, 3, 3}, 21);
    Tensor<double> x = randn({1, 2, 3, 3}, 22), x0_copy(x.shape());
    ConstTensorView<double> v = x.cview();
    for (double t : by_view.timesteps()) {
      const StepOutput<double> a = by_view.step(m.cview(), t, v);
      const StepOutput<double> b = by_copy.step(m.cview(), t, x.cview());
      std::copy(b.pred_original_sample.begin(), b.pred_original_sample.end(), x0_copy.begin());
      CHECK(std::equal(a.pred_original_sample.begin(), a.pred_original_sample.end(), x0_copy.begin()));
      std::copy(b.prev_sample.begin(), b.prev_sample.end(), x.begin());
      CHECK(std::equal(a.prev_sample.begin(), a.prev_sample.end(), x.begin()));
      v = a.prev_sample;
    }
  }
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
  CHECK_THROWS_WITH(UniPCSampler<double>(UniPCConfig{.solver_order = 0}), Contains("solver_order"));
  {
    UniPCSampler<double> u;
    CHECK_THROWS_WITH(u.step(x.cview(), 999, x.cview()), Contains("set_timesteps"));
    u.set_timesteps(10);
    CHECK_THROWS_WITH(u.step(x.cview(), 7, x.cview()), Contains("not one of the sampler's timesteps"));
    CHECK_THROWS_WITH(u.step(m3.cview(), 999, x.cview()), Contains("model_output vs sample"));
  }
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
  // UniPC: diffusers' defaults, every key it writes (0.40), the list key, and the rejections.
  const UniPCConfig unipc = std::get<UniPCConfig>(read(R"({"_class_name": "UniPCMultistepScheduler"})"));
  CHECK((unipc.solver_order == 2 && unipc.solver_type == UniPCSolverType::bh2 && unipc.predict_x0 &&
         unipc.lower_order_final && unipc.disable_corrector.empty() && unipc.final_sigmas_type == FinalSigmasType::zero &&
         unipc.timesteps.spacing == TimestepSpacing::linspace && unipc.sigma_spacing == SigmaSpacing::interpolated));
  const UniPCConfig full = std::get<UniPCConfig>(read(R"({"_class_name": "UniPCMultistepScheduler",
      "_diffusers_version": "0.40.0", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
      "disable_corrector": [0, 3], "dynamic_thresholding_ratio": 0.995, "final_sigmas_type": "sigma_min",
      "flow_shift": 1.0, "lower_order_final": false, "num_train_timesteps": 1000, "predict_x0": false,
      "prediction_type": "v_prediction", "rescale_betas_zero_snr": false, "sample_max_value": 1.0,
      "shift_terminal": null, "sigma_max": null, "sigma_min": null, "solver_order": 3, "solver_p": null,
      "solver_type": "bh1", "steps_offset": 1, "thresholding": false, "time_shift_type": "exponential",
      "timestep_spacing": "leading", "trained_betas": null, "use_beta_sigmas": false, "use_dynamic_shifting": false,
      "use_exponential_sigmas": false, "use_flow_sigmas": false, "use_karras_sigmas": true})"));
  CHECK((full.solver_order == 3 && full.solver_type == UniPCSolverType::bh1 && !full.predict_x0 &&
         !full.lower_order_final && full.disable_corrector == std::vector<index_t>{0, 3} &&
         full.final_sigmas_type == FinalSigmasType::sigma_min && full.prediction_type == PredictionType::v_prediction &&
         full.timesteps.spacing == TimestepSpacing::leading && full.timesteps.steps_offset == 1 &&
         full.sigma_spacing == SigmaSpacing::karras));
  const nlohmann::json written = io::scheduler_config_to_json(full);
  CHECK(written.at("disable_corrector") == json::array({0, 3}));
  CHECK(std::get<UniPCConfig>(io::scheduler_config_from_json(written, "back")).disable_corrector == full.disable_corrector);
  // diffusers maps DPM-Solver's solver types to bh2.
  CHECK(std::get<UniPCConfig>(read(R"({"_class_name": "UniPCMultistepScheduler", "solver_type": "midpoint"})"))
            .solver_type == UniPCSolverType::bh2);
  for (const char* bad : {R"("solver_type": "bh3")", R"("solver_order": 0)", R"("disable_corrector": "1")",
                          R"("disable_corrector": [1.5])", R"("disable_corrector": [-1])", R"("solver_p": "DDIMScheduler")",
                          R"("use_beta_sigmas": true)", R"("use_flow_sigmas": true)", R"("use_dynamic_shifting": true)",
                          R"("sigma_min": 0.1)", R"("sigma_max": 10)", R"("shift_terminal": 0.5)",
                          R"("prediction_type": "flow_prediction")", R"("clip_sample": true)",
                          R"("final_sigmas_type": "one")"}) {
    const std::string text = std::string(R"({"_class_name": "UniPCMultistepScheduler", )") + bad + "}";
    INFO(text);
    const std::string key = std::string(bad).substr(1, std::string(bad).find('"', 1) - 1);
    const std::string value = std::string(bad).substr(std::string(bad).find(':') + 2);
    CHECK_THROWS_WITH(read(text), Contains("f.json") && Contains(key) && Contains(value.front() == '"' ? value.substr(1, value.size() - 2) : value));
  }
  CHECK_THROWS_WITH(read(R"({"_class_name": "UniPCMultistepScheduler", "use_karras_sigmas": true,
                             "use_exponential_sigmas": true})"),
                    Contains("f.json") && Contains("use_exponential_sigmas"));

  SamplerConfig e = read(R"({"_class_name": "EulerDiscreteScheduler"})");
  io::apply_step_kwargs(e, json{{"s_churn", 0.5}});
  CHECK(std::get<EulerConfig>(e).s_churn == 0.5);
  CHECK_THROWS_WITH(io::apply_step_kwargs(e, json{{"eta", 0.5}}), Contains("eta"));
}
