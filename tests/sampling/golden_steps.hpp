#pragma once
// One scheduler step against diffusers, for the step kinds (ddpm_step,
// ddim_step, and any other sampler's step in the same format): the case's
// config builds the sampler, set_timesteps runs when the case says so, and
// prev_sample / pred_original_sample are compared elementwise with atol.
#include "sampling/golden_support.hpp"

#include "ddpm/sampling/any_sampler.hpp"

namespace ddpm::test {

template <Scalar T>
void check_step_case(const GoldenKind& g, const json& c, DeviationReport& report) {
  INFO("case " << case_name(c) << " (" << precision_key<T>() << ")");
  AnySampler<T> sampler = make_sampler<T>(case_config(c));
  const json& st = c.value("set_timesteps", json());
  if (!st.is_null()) {
    const auto n = st.at("num_inference_steps").get<index_t>();
    std::visit([&](auto& s) { s.set_timesteps(n); }, sampler);
  }
  if (c.contains("timesteps") && !c["timesteps"].is_null()) {
    const auto ts = std::visit([](auto& s) { return std::vector<double>(s.timesteps().begin(), s.timesteps().end()); },
                               sampler);
    CHECK(ts == c["timesteps"].get<std::vector<double>>());
  }
  const double t = c.at("timestep").get<double>();
  if (c.contains("prev_timestep") && !c["prev_timestep"].is_null()) {
    std::visit(
        [&](auto& s) {
          if constexpr (requires { s.previous_timestep(t); })
            CHECK(s.previous_timestep(t) == c["prev_timestep"].get<index_t>());
        },
        sampler);
  }

  const auto model_output = case_tensor<T>(g, c, "model_output");
  const auto sample = case_tensor<T>(g, c, "sample");
  const bool has_noise = c.contains("tensors") && c["tensors"].contains("variance_noise");
  Tensor<T> noise;
  if (has_noise) noise = case_tensor<T>(g, c, "variance_noise");
  // No noise given: a step that wants to draw some throws, so the number of draws is checked too.
  const NoiseSource<T> source = has_noise ? NoiseSource<T>(noise.cview()) : NoiseSource<T>();

  // Euler-type samplers look their step index up in scale_model_input.
  std::visit([&](auto& s) { (void)s.scale_model_input(sample.cview(), t); }, sampler);
  const StepOutput<T> out = std::visit([&](auto& s) { return s.step(model_output.cview(), t, sample.cview(), source); },
                                       sampler);

  for (const char* q : {"prev_sample", "pred_original_sample"}) {
    INFO(q);
    const auto ref = case_tensor<double>(g, c, ref_role<T>(q));
    const ConstTensorView<T> x = std::string(q) == "prev_sample" ? out.prev_sample : out.pred_original_sample;
    int nan_refs = 0;
    const Deviation d = deviation_skipping_nan_ref(x, ref.cview(), tolerance_of<T>(c, q, "atol"), 0.0, nan_refs);
    if (nan_refs > 0) WARN(case_name(c) << ": " << nan_refs << " NaN reference values of " << q << " skipped");
    report.add(std::string(q) + " " + precision_key<T>(), d);
    CHECK(d.shape_ok);
    CHECK(d.worst_ratio <= 1.0);
  }
  report.count_case();
}

inline void check_step_kind(const std::string& kind) {
  const auto g = load_kind(kind);
  if (!g) return;
  DeviationReport report(kind);
  for (const json& c : g->cases()) {
    check_step_case<float>(*g, c, report);
    check_step_case<double>(*g, c, report);
  }
  CHECK(report.cases() == 2 * static_cast<int>(g->cases().size()));
}

}  // namespace ddpm::test
