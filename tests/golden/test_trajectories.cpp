// Whole sampling runs against diffusers: every case's scheduler drives the
// one sampling loop with the case's closed-form model
//   model_output = tanh(a x) (t / T) + b x + c,
// starting from initial_noise * init_noise_sigma and fed the stored step
// noise in order. Per step i: max|x[i] - ref[i]| <= rtol_step * max|ref[i]|
// for the samples, model inputs and model outputs (float) or samples_f64 (double).
#include "sampling/golden_support.hpp"

#include <cmath>

#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/loop.hpp"

using namespace ddpm;
using namespace ddpm::test;

namespace {

constexpr const char* kFormula = "model_output = tanh(a * x) * (t / T) + b * x + c";

// Copies per-step tensors into one [steps, ...] tensor.
template <Scalar T>
struct Recorder {
  std::vector<T> data;
  index_t steps = 0;
  void add(ConstTensorView<T> x) {
    data.insert(data.end(), x.begin(), x.end());
    ++steps;
  }
};

// Checks every step slice of `got` against `ref` ([steps, ...]).
template <Scalar T>
void check_per_step(const Recorder<T>& got, const Tensor<double>& ref, double rtol_step, const std::string& what,
                    DeviationReport& report) {
  INFO(what);
  REQUIRE(ref.rank() >= 1);
  REQUIRE(got.steps == ref.dim(0));
  REQUIRE(static_cast<index_t>(got.data.size()) == ref.numel());
  const index_t per = ref.numel() / std::max<index_t>(ref.dim(0), 1);
  Deviation worst;
  for (index_t i = 0; i < got.steps; ++i) {
    INFO("step " << i);
    double ref_max = 0;
    for (index_t k = 0; k < per; ++k) ref_max = std::max(ref_max, std::abs(ref[i * per + k]));
    const Deviation d = deviation(got.data.data() + i * per, ref.data() + i * per, per, rtol_step * ref_max, 0.0);
    CHECK(d.worst_ratio <= 1.0);
    worst.max_abs = std::max(worst.max_abs, d.max_abs);
    worst.max_rel = std::max(worst.max_rel, d.max_rel);
    worst.worst_ratio = std::max(worst.worst_ratio, d.worst_ratio);
  }
  report.add(what, worst);
}

template <Scalar T>
void check_trajectory(const GoldenKind& g, const json& c, DeviationReport& report) {
  INFO("case " << case_name(c) << " (" << precision_key<T>() << ")");
  const json& m = c.at("model");
  if (m.value("formula", std::string()) != kFormula) FAIL("case " << case_name(c) << ": unknown model " << m.dump());
  const T a = static_cast<T>(m.at("a").get<double>()), b = static_cast<T>(m.at("b").get<double>());
  const T cc = static_cast<T>(m.at("c").get<double>()), TT = static_cast<T>(m.at("T").get<double>());

  AnySampler<T> sampler = make_sampler<T>(case_config(c));
  std::visit([&](auto& s) { s.set_timesteps(c.at("num_inference_steps").get<index_t>()); }, sampler);
  if (c.contains("timesteps")) {
    const auto ts = std::visit([](auto& s) { return std::vector<double>(s.timesteps().begin(), s.timesteps().end()); },
                               sampler);
    CHECK(ts == c["timesteps"].get<std::vector<double>>());
  }
  if (c.contains("init_noise_sigma")) {
    // x_T = initial_noise * init_noise_sigma, so the sigma is held to the
    // samples' relative rule. The stored value is diffusers' float32 run's
    // (float32 alphas_cumprod, float32 sigmas), so a float64 sampler is held
    // to the float32 rule too (10x diffusers' own float32-vs-float64
    // difference per step), and at least to the measured effect of float32
    // sigmas where the case has it. (That measurement alone is too tight: it
    // is the rounding of float64 sigmas to float32, e.g. 4.1e-8 for
    // euler_linear_30, whose float32 init_noise_sigma is 1.9e-7 from the float64 one.)
    double sigma_rtol = c.at("tolerance").at("float32").at("rtol_step").get<double>();
    const json f32_sigmas = c.value("measured_effect_of_float32_sigmas_in_float64_run", json());
    if (std::is_same_v<T, double> && f32_sigmas.is_object())
      sigma_rtol = std::max(sigma_rtol, f32_sigmas.at("max_rel_per_step").get<double>());
    const double sigma = std::visit([](auto& s) { return static_cast<double>(s.init_noise_sigma()); }, sampler);
    const double ref_sigma = c["init_noise_sigma"].get<double>();
    const Deviation d = deviation(&sigma, &ref_sigma, 1, 0.0, sigma_rtol);
    report.add(std::string("init_noise_sigma ") + precision_key<T>(), d);
    INFO("init_noise_sigma " << sigma << ", diffusers " << ref_sigma << ", allowed rel. " << sigma_rtol);
    CHECK(d.ok());
  }

  const auto initial_noise = case_tensor<T>(g, c, "initial_noise");
  const bool has_noise = c["tensors"].contains("step_noise");
  Tensor<T> step_noise;
  if (has_noise) step_noise = case_tensor<T>(g, c, "step_noise");
  index_t draws = 0;
  const NoiseSource<T> noise(typename NoiseSource<T>::Fill([&](TensorView<T> out) {
    REQUIRE(has_noise);
    REQUIRE(draws < step_noise.dim(0));
    const ConstTensorView<T> z = step_noise.cview().slice(draws++, 1);
    REQUIRE(z.numel() == out.numel());
    std::copy(z.begin(), z.end(), out.begin());
  }));

  Recorder<T> inputs, outputs, samples;
  Tensor<T> m_out;
  auto model = [&](ConstTensorView<T> x, double t) -> ConstTensorView<T> {
    inputs.add(x);
    m_out.resize(x.shape());
    const T tt = static_cast<T>(t) / TT;
    for (index_t i = 0; i < x.numel(); ++i) m_out[i] = std::tanh(a * x[i]) * tt + b * x[i] + cc;
    outputs.add(m_out.cview());
    return m_out.cview();
  };
  auto progress = [&](index_t, index_t, double, ConstTensorView<T> x) { samples.add(x); };
  std::visit([&](auto& s) { (void)sample_loop(s, model, initial_noise.cview(), noise, progress); }, sampler);
  if (has_noise) CHECK(draws == step_noise.dim(0));  // drew exactly as often as diffusers

  const double rtol = c.at("tolerance").at(precision_key<T>()).at("rtol_step").template get<double>();
  check_per_step(samples, case_tensor<double>(g, c, ref_role<T>("samples")), rtol,
                 std::string("samples ") + precision_key<T>(), report);
  if constexpr (std::is_same_v<T, float>) {
    check_per_step(inputs, case_tensor<double>(g, c, "model_inputs"), rtol, "model_inputs float32", report);
    check_per_step(outputs, case_tensor<double>(g, c, "model_outputs"), rtol, "model_outputs float32", report);
  }
  report.count_case();
}

}  // namespace

TEST_CASE("sampling trajectories agree with diffusers (every case, float and double)", "[golden][trajectories]") {
  const auto g = load_kind("trajectories");
  if (!g) return;
  DeviationReport report("trajectories");
  for (const json& c : g->cases()) {
    check_trajectory<float>(*g, c, report);
    check_trajectory<double>(*g, c, report);
  }
  CHECK(report.cases() == 2 * static_cast<int>(g->cases().size()));
}
