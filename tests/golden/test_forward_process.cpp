// q_sample (add_noise) and velocity (get_velocity) against diffusers: every
// case, one timestep per batch element, float and double.
#include "sampling/golden_support.hpp"

#include "ddpm/diffusion/forward_process.hpp"
#include "ddpm/diffusion/schedule.hpp"

using namespace ddpm;
using namespace ddpm::test;

namespace {

template <Scalar T>
void check_forward(const GoldenKind& g, const json& c, DeviationReport& report) {
  INFO("case " << case_name(c) << " (" << precision_key<T>() << ")");
  const NoiseSchedule<T> s(std::visit([](const auto& k) { return k.schedule; }, case_config(c)));
  const auto x0 = case_tensor<T>(g, c, "original_samples");
  const auto noise = case_tensor<T>(g, c, "noise");
  const auto ts = g.tensors->get_int64(c["tensors"]["timesteps"].get<std::string>());
  const std::vector<std::int64_t> timesteps(ts.begin(), ts.end());

  const Tensor<T> noisy = q_sample(s, x0.cview(), timesteps, noise.cview());
  const Tensor<T> v = velocity(s, x0.cview(), noise.cview(), timesteps);
  const std::pair<const char*, const Tensor<T>*> results[] = {{"noisy_samples", &noisy}, {"velocity", &v}};
  for (const auto& [q, x] : results) {
    INFO(q);
    const auto ref = case_tensor<double>(g, c, ref_role<T>(q));
    const Deviation d = deviation(x->cview(), ref.cview(), tolerance_of<T>(c, q, "atol"));
    report.add(std::string(q) + " " + precision_key<T>(), d);
    CHECK(d.shape_ok);
    CHECK(d.worst_ratio <= 1.0);
  }
  report.count_case();
}

}  // namespace

TEST_CASE("the forward process agrees with diffusers (every case, float and double)", "[golden][forward_process]") {
  const auto g = load_kind("forward_process");
  if (!g) return;
  DeviationReport report("forward_process");
  for (const json& c : g->cases()) {
    check_forward<float>(*g, c, report);
    check_forward<double>(*g, c, report);
  }
  CHECK(report.cases() == 2 * static_cast<int>(g->cases().size()));
}
