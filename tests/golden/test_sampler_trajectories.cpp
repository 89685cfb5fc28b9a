// Whole sampling loops of more diffusers samplers (golden kind
// sampler_trajectories, tests/data/golden-more/sampler_trajectories.README.md),
// data driven: every case's `config` goes through the scheduler_config reader
// and the sampler registry (config -> sampler), nothing here names a case.
//
// Per case and precision:
//   1. the schedule: timesteps, then sigmas (where the sampler has them), held
//      to the case's rtol_step relative to max|ref|;
//   2. the whole loop with the case's closed-form model and the stored step
//      noise replayed in order (noise_draws_per_call checked per call):
//      per call i, max|x[i] - ref[i]| <= rtol_step * max|ref[i]| for samples,
//      model_inputs and model_outputs (float) or samples_f64 (double);
//   3. (float) each call alone: scale_model_input and step() from the stored
//      previous sample, model output and noise, against the stored values.
// The ScoreSdeVe predictor-corrector loop (loop sde_ve_predictor_corrector)
// runs through score_sde_ve_sample with the case's score-like model; besides
// samples it checks model inputs, model sigmas, the call kinds and the
// predictor steps' sample means, per call, in float and double.
#include "sampling/golden_support.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "ddpm/io/score_sde_ve_config.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/predictor_corrector.hpp"

using namespace ddpm;
using namespace ddpm::test;

namespace {

constexpr const char* kFormula = "model_output = tanh(a * x) * (t / T) + b * x + c";


// max|x[i] - ref[i]| <= rtol * max|ref[i]| over one slice of `per` values.
template <class A>
Deviation slice_deviation(const A* x, const double* ref, index_t per, double rtol) {
  double ref_max = 0;
  for (index_t k = 0; k < per; ++k) ref_max = std::max(ref_max, std::abs(ref[k]));
  return deviation(x, ref, per, rtol * ref_max, 0.0);
}

void merge(Deviation& worst, const Deviation& d) {
  worst.max_abs = std::max(worst.max_abs, d.max_abs);
  worst.max_rel = std::max(worst.max_rel, d.max_rel);
  worst.worst_ratio = std::max(worst.worst_ratio, d.worst_ratio);
}

// Per-call tensors, one slice per model call.
template <Scalar T>
struct Recorder {
  std::vector<T> data;
  index_t calls = 0;
  void add(ConstTensorView<T> x) {
    data.insert(data.end(), x.begin(), x.end());
    ++calls;
  }
};

template <Scalar T>
void check_per_call(const Recorder<T>& got, const Tensor<double>& ref, double rtol, const std::string& what,
                    DeviationReport& report) {
  INFO(what);
  REQUIRE(ref.rank() >= 1);
  REQUIRE(got.calls == ref.dim(0));
  REQUIRE(static_cast<index_t>(got.data.size()) == ref.numel());
  const index_t per = ref.numel() / std::max<index_t>(ref.dim(0), 1);
  Deviation worst;
  for (index_t i = 0; i < got.calls; ++i) {
    const Deviation d = slice_deviation(got.data.data() + i * per, ref.data() + i * per, per, rtol);
    INFO("call " << i << ": max |x - ref| = " << d.max_abs << ", rel. to max|ref| = " << d.max_rel);
    CHECK(d.worst_ratio <= 1.0);
    merge(worst, d);
  }
  report.add(what, worst);
}

// A list of numbers from the case (null -> NaN, as KDPM2's sigmas_interpol[0]).
std::vector<double> numbers(const json& a) {
  std::vector<double> v;
  for (const json& x : a) v.push_back(x.is_null() ? NAN : x.get<double>());
  return v;
}

void check_list(const std::vector<double>& got, const std::vector<double>& ref, double rtol, const std::string& what,
                DeviationReport& report) {
  INFO(what);
  REQUIRE(got.size() == ref.size());
  const Deviation d = slice_deviation(got.data(), ref.data(), static_cast<index_t>(ref.size()), rtol);
  report.add(what, d);
  CHECK(d.ok());
}

// The case's field for T: `key_f64` in double where diffusers' float64 run differs.
template <Scalar T>
const json& field_for(const json& c, const std::string& key) {
  if (std::is_same_v<T, double> && c.contains(key + "_f64")) return c[key + "_f64"];
  return c.at(key);
}

// Replays the stored step noise, counting the draws.
template <Scalar T>
struct NoiseReplay {
  Tensor<T> noise;
  bool has = false;
  index_t draws = 0;
  NoiseSource<T> source() {
    return NoiseSource<T>(typename NoiseSource<T>::Fill([this](TensorView<T> out) {
      REQUIRE(has);
      REQUIRE(draws < noise.dim(0));
      const ConstTensorView<T> z = noise.cview().slice(draws++, 1);
      REQUIRE(z.numel() == out.numel());
      std::copy(z.begin(), z.end(), out.begin());
    }));
  }
};

// The `standard` loop, and `ddim_inversion` (the same loop from the clean x0,
// with init_noise_sigma 1 and no input scaling: both checked here too).
template <Scalar T>
void check_standard(const GoldenKind& g, const json& c, DeviationReport& report) {
  const bool inversion = c.value("loop", std::string()) == "ddim_inversion";
  const std::string start_role = inversion ? "x0" : "initial_noise";
  INFO("case " << case_name(c) << " (" << precision_key<T>() << ")");
  const json& m = c.at("model");
  if (m.value("formula", std::string()) != kFormula) FAIL("case " << case_name(c) << ": unknown model " << m.dump());
  const T a = static_cast<T>(m.at("a").get<double>()), b = static_cast<T>(m.at("b").get<double>());
  const T cc = static_cast<T>(m.at("c").get<double>()), TT = static_cast<T>(m.at("T").get<double>());
  const double rtol = c.at("tolerance").at(precision_key<T>()).at("rtol_step").template get<double>();
  const auto n = c.at("num_inference_steps").get<index_t>();
  const auto draws_per_call = c.at("noise_draws_per_call").get<std::vector<index_t>>();
  // The model's t per call: diffusers' float32 run's, unless its float64 run
  // had other timesteps (Karras / exponential sigmas: timesteps_f64).
  const bool t_f64 = std::is_same_v<T, double> && !c.contains("model_t_f64") && c.contains("timesteps_f64");
  const auto model_t = numbers(t_f64 ? c["timesteps_f64"] : field_for<T>(c, "model_t"));
  const double t_max = model_t.empty() ? 0.0 : std::abs(*std::max_element(model_t.begin(), model_t.end(),
                                                          [](double p, double q) { return std::abs(p) < std::abs(q); }));
  const auto calls = c.at("num_model_calls").get<index_t>();
  REQUIRE(static_cast<index_t>(draws_per_call.size()) == calls);

  const SamplerConfig config = case_config(c);
  auto fresh = [&] {
    AnySampler<T> s = make_sampler<T>(config);
    std::visit([&](auto& x) { x.set_timesteps(n); }, s);
    return s;
  };

  // 1. The schedule.
  AnySampler<T> sampler = fresh();
  const auto timesteps =
      std::visit([](auto& s) { return std::vector<double>(s.timesteps().begin(), s.timesteps().end()); }, sampler);
  check_list(timesteps, numbers(field_for<T>(c, "timesteps")), rtol, std::string("timesteps ") + precision_key<T>(),
             report);
  REQUIRE(static_cast<index_t>(timesteps.size()) == calls);
  std::visit(
      [&](auto& s) {
        if constexpr (requires { s.sigmas(); }) {
          std::vector<double> sig(s.sigmas().begin(), s.sigmas().end());
          check_list(sig, numbers(field_for<T>(c, "sigmas")), rtol, std::string("sigmas ") + precision_key<T>(),
                     report);
        }
        // KDPM2's midpoint sigmas; diffusers' unused first one is null (NaN) and skipped.
        if constexpr (requires { s.sigmas_interpol(); }) {
          std::vector<double> got(s.sigmas_interpol().begin(), s.sigmas_interpol().end());
          auto ref = numbers(field_for<T>(c, "sigmas_interpol"));
          REQUIRE(got.size() == ref.size());
          for (std::size_t k = 0; k < ref.size(); ++k)
            if (std::isnan(ref[k])) ref[k] = got[k];
          check_list(got, ref, rtol, std::string("sigmas_interpol ") + precision_key<T>(), report);
        }
      },
      sampler);
  const double sigma0 = std::visit([](auto& s) { return static_cast<double>(s.init_noise_sigma()); }, sampler);
  const double ref_sigma0 = c.at("init_noise_sigma").get<double>();
  {
    INFO("init_noise_sigma " << sigma0 << ", diffusers " << ref_sigma0);
    CHECK(std::abs(sigma0 - ref_sigma0) <= std::max(rtol, c.at("tolerance").at("float32").at("rtol_step").get<double>()) *
                                               std::abs(ref_sigma0));
  }

  // 2. The whole loop.
  NoiseReplay<T> replay;
  replay.has = c["tensors"].contains("step_noise");
  if (replay.has) replay.noise = case_tensor<T>(g, c, "step_noise");
  const NoiseSource<T> noise = replay.source();
  if (inversion) CHECK(sigma0 == 1.0);
  Tensor<T> x = case_tensor<T>(g, c, start_role);
  for (T& v : x.span()) v *= static_cast<T>(sigma0);
  Recorder<T> inputs, outputs, samples;
  Tensor<T> m_out;
  for (index_t i = 0; i < calls; ++i) {
    const double t = timesteps[static_cast<std::size_t>(i)];
    INFO("call " << i << ", t = " << t);
    CHECK(std::abs(t - model_t[static_cast<std::size_t>(i)]) <= rtol * t_max);
    const index_t before = replay.draws;
    std::visit(
        [&](auto& s) {
          const ConstTensorView<T> in = s.scale_model_input(x.cview(), t);
          inputs.add(in);
          m_out.resize(in.shape());
          const T tt = static_cast<T>(t) / TT;
          for (index_t k = 0; k < in.numel(); ++k) m_out[k] = std::tanh(a * in[k]) * tt + b * in[k] + cc;
          outputs.add(m_out.cview());
          const auto out = s.step(m_out.cview(), t, x.cview(), noise);
          x = Tensor<T>::copy_of(out.prev_sample);
          samples.add(x.cview());
        },
        sampler);
    CHECK(replay.draws - before == draws_per_call[static_cast<std::size_t>(i)]);
  }
  if (replay.has) CHECK(replay.draws == replay.noise.dim(0));
  check_per_call(samples, case_tensor<double>(g, c, ref_role<T>("samples")), rtol,
                 std::string("samples ") + precision_key<T>(), report);
  if constexpr (std::is_same_v<T, float>) {
    check_per_call(inputs, case_tensor<double>(g, c, "model_inputs"), rtol, "model_inputs float32", report);
    check_per_call(outputs, case_tensor<double>(g, c, "model_outputs"), rtol, "model_outputs float32", report);

    // 3. Each call alone, from the stored previous sample, model output and noise.
    const auto ref_in = case_tensor<float>(g, c, "model_inputs"), ref_out = case_tensor<float>(g, c, "model_outputs");
    const auto ref_x = case_tensor<float>(g, c, "samples"), x_T = case_tensor<float>(g, c, inversion ? "x0" : "x_T");
    NoiseReplay<float> alone;
    alone.has = replay.has;
    alone.noise = replay.noise;
    const NoiseSource<float> alone_noise = alone.source();
    AnySampler<float> s1 = fresh();
    Deviation worst_in, worst_x;
    const index_t per = x_T.numel();
    for (index_t i = 0; i < calls; ++i) {
      INFO("call " << i << " alone");
      const ConstTensorView<float> prev = i == 0 ? x_T.cview() : ref_x.cview().slice(i - 1, 1).reshape(x_T.shape());
      const double t = timesteps[static_cast<std::size_t>(i)];
      std::visit(
          [&](auto& s) {
            const ConstTensorView<float> in = s.scale_model_input(prev, t);
            const Deviation di =
                slice_deviation(in.data(), case_tensor<double>(g, c, "model_inputs").data() + i * per, per, rtol);
            CHECK(di.worst_ratio <= 1.0);
            merge(worst_in, di);
            const auto out = s.step(ref_out.cview().slice(i, 1).reshape(x_T.shape()), t, prev, alone_noise);
            const Deviation dx = slice_deviation(out.prev_sample.data(),
                                                 case_tensor<double>(g, c, "samples").data() + i * per, per, rtol);
            CHECK(dx.worst_ratio <= 1.0);
            merge(worst_x, dx);
          },
          s1);
    }
    (void)ref_in;
    report.add("model_inputs, each call alone, float32", worst_in);
    report.add("samples, each call alone, float32", worst_x);
  }
  report.count_case();
}


constexpr const char* kScoreFormula = "model_output = -(x - c * tanh(a * x)) / (sigma^2 + d)";

// The `sde_ve_predictor_corrector` loop (ScoreSdeVePipeline).
template <Scalar T>
void check_sde_ve(const GoldenKind& g, const json& c, DeviationReport& report) {
  INFO("case " << case_name(c) << " (" << precision_key<T>() << ")");
  const json& m = c.at("model");
  if (m.value("formula", std::string()) != kScoreFormula) FAIL("case " << case_name(c) << ": unknown model " << m.dump());
  const T a = static_cast<T>(m.at("a").get<double>()), cc = static_cast<T>(m.at("c").get<double>()),
          d = static_cast<T>(m.at("d").get<double>());
  const double rtol = c.at("tolerance").at(precision_key<T>()).at("rtol_step").template get<double>();
  const auto n = c.at("num_inference_steps").get<index_t>();
  const auto calls = c.at("num_model_calls").get<index_t>();
  const auto kinds = c.at("call_kinds").get<std::vector<std::string>>();
  const auto draws_per_call = c.at("noise_draws_per_call").get<std::vector<index_t>>();
  REQUIRE(static_cast<index_t>(kinds.size()) == calls);
  REQUIRE(static_cast<index_t>(draws_per_call.size()) == calls);

  const ScoreSdeVeConfig config = io::score_sde_ve_config_from_json(c.at("config"), "case " + case_name(c) + " config");
  ScoreSdeVeScheduler<T> sched(config);
  sched.set_timesteps(n);
  sched.set_sigmas(n);
  const auto as_doubles = [](std::span<const T> v) { return std::vector<double>(v.begin(), v.end()); };
  const std::string p = precision_key<T>();
  check_list(as_doubles(sched.timesteps()), numbers(field_for<T>(c, "timesteps")), rtol, "timesteps " + p, report);
  check_list(as_doubles(sched.sigmas()), numbers(field_for<T>(c, "sigmas")), rtol, "sigmas " + p, report);
  check_list(as_doubles(sched.discrete_sigmas()), numbers(field_for<T>(c, "discrete_sigmas")), rtol,
             "discrete_sigmas " + p, report);
  CHECK(static_cast<double>(sched.init_noise_sigma()) == Approx(c.at("init_noise_sigma").get<double>()).epsilon(1e-7));
  const auto index_ref = c.at("predictor_discrete_sigma_index").get<std::vector<index_t>>();
  REQUIRE(static_cast<index_t>(index_ref.size()) == n);
  for (index_t i = 0; i < n; ++i) {
    INFO("predictor step " << i);
    CHECK(sched.discrete_sigma_index(static_cast<double>(sched.timesteps()[static_cast<std::size_t>(i)])) ==
          index_ref[static_cast<std::size_t>(i)]);
  }

  // The whole loop: the library's predictor-corrector loop, the stored noise replayed.
  NoiseReplay<T> replay;
  replay.has = true;
  replay.noise = case_tensor<T>(g, c, "step_noise");
  const NoiseSource<T> noise = replay.source();
  const Tensor<T> initial = case_tensor<T>(g, c, "initial_noise");
  Recorder<T> inputs, sigmas, outputs, samples, means;
  std::vector<std::string> got_kinds;
  std::vector<index_t> got_draws;
  index_t draws_before = 0;
  Tensor<T> out;
  const auto model = [&](ConstTensorView<T> x, std::span<const T> sigma) {
    REQUIRE(static_cast<index_t>(sigma.size()) == x.dim(0));
    inputs.add(x);
    sigmas.add(ConstTensorView<T>(sigma.data(), Shape{static_cast<index_t>(sigma.size())}));
    out.resize(x.shape());
    const index_t per = x.numel() / x.dim(0);
    for (index_t k = 0; k < x.numel(); ++k) {
      const T s = sigma[static_cast<std::size_t>(k / per)];
      out[k] = -(x[k] - cc * std::tanh(a * x[k])) / (s * s + d);
    }
    outputs.add(out.cview());
    return out.cview();
  };
  const Tensor<T> final_sample = score_sde_ve_sample(sched, model, initial.cview(), noise, [&](const PCCall<T>& call) {
    got_kinds.push_back(call.kind == PCCall<T>::correct ? "correct" : "predict");
    got_draws.push_back(replay.draws - draws_before);
    draws_before = replay.draws;
    samples.add(call.sample);
    if (call.kind == PCCall<T>::predict) means.add(call.sample_mean);
  });
  CHECK(got_kinds == kinds);
  CHECK(got_draws == draws_per_call);
  CHECK(replay.draws == replay.noise.dim(0));
  REQUIRE(means.calls == n);
  // The result is the last predictor step's x_mean.
  const index_t per = initial.numel();
  CHECK(std::equal(final_sample.begin(), final_sample.end(), means.data.end() - per));

  check_per_call(samples, case_tensor<double>(g, c, ref_role<T>("samples")), rtol, "samples " + p, report);
  check_per_call(means, case_tensor<double>(g, c, ref_role<T>("sample_means")), rtol, "sample_means " + p, report);
  if constexpr (std::is_same_v<T, float>) {
    check_per_call(inputs, case_tensor<double>(g, c, "model_inputs"), rtol, "model_inputs float32", report);
    check_per_call(sigmas, case_tensor<double>(g, c, "model_sigmas"), rtol, "model_sigmas float32", report);
    check_per_call(outputs, case_tensor<double>(g, c, "model_outputs"), rtol, "model_outputs float32", report);

    // Each call alone: step_correct / step_pred from the stored previous sample, model output and noise.
    const auto ref_x = case_tensor<float>(g, c, "samples"), ref_m = case_tensor<float>(g, c, "model_outputs"),
               ref_z = case_tensor<float>(g, c, "step_noise"), x_T = case_tensor<float>(g, c, "x_T");
    const auto ref_x64 = case_tensor<double>(g, c, "samples"), ref_mean64 = case_tensor<double>(g, c, "sample_means");
    REQUIRE(ref_z.dim(0) == calls);
    Deviation worst_x, worst_mean;
    for (index_t i = 0, step = 0; i < calls; ++i) {
      INFO("call " << i << " alone (" << kinds[static_cast<std::size_t>(i)] << ")");
      const auto slice = [&](const Tensor<float>& t, index_t k) { return t.cview().slice(k, 1).reshape(x_T.shape()); };
      const ConstTensorView<float> prev = i == 0 ? x_T.cview() : slice(ref_x, i - 1);
      const NoiseSource<float> z(slice(ref_z, i));
      ConstTensorView<float> got;
      if (kinds[static_cast<std::size_t>(i)] == "correct") {
        got = sched.step_correct(slice(ref_m, i), prev, z);
      } else {
        const auto o = sched.step_pred(slice(ref_m, i), sched.timesteps()[static_cast<std::size_t>(step)], prev, z);
        got = o.prev_sample;
        const Deviation dm = slice_deviation(o.prev_sample_mean.data(), ref_mean64.data() + step * per, per, rtol);
        CHECK(dm.worst_ratio <= 1.0);
        merge(worst_mean, dm);
        ++step;
      }
      const Deviation dx = slice_deviation(got.data(), ref_x64.data() + i * per, per, rtol);
      CHECK(dx.worst_ratio <= 1.0);
      merge(worst_x, dx);
    }
    report.add("ScoreSdeVe samples, each call alone, float32", worst_x);
    report.add("ScoreSdeVe sample_means, each call alone, float32", worst_mean);
  } else {
    // diffusers' float64 run stores samples only: the model sees x_T, then the previous call's sample,
    // at sigmas_f64 of its predictor step.
    const Tensor<double> x_T = case_tensor<double>(g, c, "initial_noise"), ref_x = case_tensor<double>(g, c, "samples_f64");
    Tensor<double> ref_in({calls, per});
    const double sigma_max = c.at("init_noise_sigma").get<double>();
    for (index_t k = 0; k < per; ++k) ref_in[k] = x_T[k] * sigma_max;
    std::copy(ref_x.begin(), ref_x.begin() + (calls - 1) * per, ref_in.begin() + per);
    check_per_call(inputs, ref_in, rtol, "model_inputs float64", report);
    const auto ref_sigmas = numbers(field_for<T>(c, "sigmas"));
    const index_t batch = initial.dim(0);
    Tensor<double> ref_s({calls, batch});
    for (index_t i = 0, step = 0; i < calls; ++i) {
      for (index_t b = 0; b < batch; ++b) ref_s[i * batch + b] = ref_sigmas[static_cast<std::size_t>(step)];
      if (kinds[static_cast<std::size_t>(i)] == "predict") ++step;
    }
    check_per_call(sigmas, ref_s, rtol, "model_sigmas float64", report);
  }
  report.count_case();
}

}  // namespace

TEST_CASE("sampler trajectories agree with diffusers (every case, float and double)",
          "[golden][sampler_trajectories]") {
  const auto g = load_kind("sampler_trajectories");
  if (!g) return;
  DeviationReport report("sampler_trajectories");
  for (const json& c : g->cases()) {
    const std::string loop = c.value("loop", std::string("standard"));
    if (loop == "sde_ve_predictor_corrector") {
      check_sde_ve<float>(*g, c, report);
      check_sde_ve<double>(*g, c, report);
      continue;
    }
    if (loop != "standard" && loop != "ddim_inversion") FAIL("case " << case_name(c) << ": loop '" << loop << "' has no driver in this test");
    check_standard<float>(*g, c, report);
    check_standard<double>(*g, c, report);
  }
  CHECK(report.cases() == 2 * static_cast<int>(g->cases().size()));
}
