// set_timesteps against diffusers for every case: the timesteps exactly, and
// for DPM-Solver / Euler the sigmas and Euler's init_noise_sigma (the largest
// sigma, or derived from it) to the sigmas' rtol the file states.
#include "sampling/golden_support.hpp"

#include "ddpm/sampling/any_sampler.hpp"

using namespace ddpm;
using namespace ddpm::test;

namespace {

template <Scalar T>
void check_timesteps(const json& c, double sigma_rtol, DeviationReport& report) {
  INFO("case " << case_name(c) << " (" << precision_key<T>() << ")");
  AnySampler<T> sampler = make_sampler<T>(case_config(c));
  const auto n = c.at("num_inference_steps").get<index_t>();
  std::visit([&](auto& s) { s.set_timesteps(n); }, sampler);

  const auto ts = std::visit([](auto& s) { return std::vector<double>(s.timesteps().begin(), s.timesteps().end()); },
                             sampler);
  const auto ref = c.at("timesteps").get<std::vector<double>>();
  CHECK(ts == ref);

  // The stored sigmas and init_noise_sigma come from diffusers' float32 run
  // (float32 alphas_cumprod); a float64 schedule gives sigmas up to ~1e-4 apart
  // at small t, so only the float sampler is held to them.
  if constexpr (!std::is_same_v<T, float>) {
    report.count_case();
    return;
  }
  if (c.contains("sigmas")) {
    const auto ref_sigmas = c["sigmas"].get<std::vector<double>>();
    std::vector<double> sigmas;
    std::visit(
        [&](auto& s) {
          if constexpr (requires { s.sigmas(); })
            for (T v : s.sigmas()) sigmas.push_back(static_cast<double>(v));
        },
        sampler);
    REQUIRE(sigmas.size() == ref_sigmas.size());
    const Deviation d = deviation(sigmas.data(), ref_sigmas.data(), static_cast<index_t>(sigmas.size()), 0.0,
                                  sigma_rtol);
    report.add(std::string("sigmas ") + precision_key<T>(), d);
    CHECK(d.worst_ratio <= 1.0);
  }
  if (c.contains("init_noise_sigma")) {
    const double ref_sigma = c["init_noise_sigma"].get<double>();
    const double sigma = std::visit([](auto& s) { return static_cast<double>(s.init_noise_sigma()); }, sampler);
    const Deviation d = deviation(&sigma, &ref_sigma, 1, 0.0, sigma_rtol);
    report.add(std::string("init_noise_sigma ") + precision_key<T>(), d);
    CHECK(d.worst_ratio <= 1.0);
  }
  report.count_case();
}

}  // namespace

TEST_CASE("timesteps, sigmas and init_noise_sigma agree with diffusers (every case)", "[golden][timesteps]") {
  const auto g = load_kind("timesteps");
  if (!g) return;
  // The file's tolerance text: "timesteps: exact (...). sigmas: float32, rtol 1e-6".
  const double sigma_rtol = stated_number(g->doc.at("tolerance"), {"sigmas:", "rtol"}, "timesteps tolerance");
  DeviationReport report("timesteps");
  for (const json& c : g->cases()) {
    check_timesteps<float>(c, sigma_rtol, report);
    check_timesteps<double>(c, sigma_rtol, report);
  }
  CHECK(report.cases() == 2 * static_cast<int>(g->cases().size()));
}
