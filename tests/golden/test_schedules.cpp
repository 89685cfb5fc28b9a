// Noise schedules against diffusers: betas and alphas_cumprod of every case,
// float against the float32 reference, double against the float64 one, under
// |x - ref| <= atol + rtol |ref| with the per-case tolerances.
#include "sampling/golden_support.hpp"

#include "ddpm/diffusion/schedule.hpp"

using namespace ddpm;
using namespace ddpm::test;

namespace {

template <Scalar T>
NoiseSchedule<T> schedule_for(const SamplerConfig& cfg) {
  NoiseSchedule<T> s = std::visit([](const auto& c) { return NoiseSchedule<T>(c.schedule); }, cfg);
  // DPM-Solver and Euler keep the zero-SNR end at 2^-24 (README).
  if (std::holds_alternative<DPMSolverConfig>(cfg) || std::holds_alternative<EulerConfig>(cfg))
    s.clamp_terminal_alpha_cumprod();
  return s;
}

template <Scalar T>
void check_schedules(const GoldenKind& g, DeviationReport& report) {
  for (const json& c : g.cases()) {
    INFO("case " << case_name(c) << " (" << precision_key<T>() << ")");
    const NoiseSchedule<T> s = schedule_for<T>(case_config(c));
    const std::span<const T> values[] = {s.betas(), s.alphas_cumprod()};
    const char* names[] = {"betas", "alphas_cumprod"};
    for (int q = 0; q < 2; ++q) {
      INFO(names[q]);
      const auto ref = case_tensor<double>(g, c, ref_role<T>(names[q]));
      const ConstTensorView<T> x(values[q].data(), Shape{static_cast<index_t>(values[q].size())});
      const Deviation d = deviation(x, ref.cview(), tolerance_of<T>(c, names[q], "atol"),
                                    tolerance_of<T>(c, names[q], "rtol"));
      report.add(std::string(names[q]) + " " + precision_key<T>(), d);
      CHECK(d.shape_ok);
      CHECK(d.worst_ratio <= 1.0);
    }
    report.count_case();
  }
}

}  // namespace

TEST_CASE("schedules agree with diffusers (every case, float and double)", "[golden][schedules]") {
  const auto g = load_kind("schedules");
  if (!g) return;
  DeviationReport report("schedules");
  check_schedules<float>(*g, report);
  check_schedules<double>(*g, report);
  CHECK(report.cases() == 2 * static_cast<int>(g->cases().size()));
}
