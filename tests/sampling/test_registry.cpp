// The sampler registry (sampling/registry.hpp) and what derives from it: the
// names, the variants, scheduler_config.json both ways, the AnySampler
// overloads of the loops, and the loops' stop on a non-finite model output.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/core/thread_pool.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/inpaint.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sdedit.hpp"

#include "sampling/golden_support.hpp"
#include "support/random_tensor.hpp"

using namespace ddpm;
using Catch::Matchers::Contains;
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

// ---------------------------------------------------------------------------
// Registrations that must be refused, for the checks below.
namespace reg_test {
struct ClashConfig {};
// A DDIM sampler under another config: registered with a clashing name.
template <class T>
struct AliasClash : DDIMSampler<T> {
  explicit AliasClash(const ClashConfig& = {}) {}
};
struct OtherConfig {};
template <class T>
struct ClassClash : DDIMSampler<T> {
  explicit ClassClash(const OtherConfig& = {}) {}
};
struct SpacedConfig {};
template <class T>
struct Spaced : DDIMSampler<T> {
  explicit Spaced(const SpacedConfig& = {}) {}
};
struct NotASamplerConfig {};
template <class T>
struct NotASampler {
  using scalar_type = T;
  explicit NotASampler(const NotASamplerConfig&) {}
};
}  // namespace reg_test

namespace ddpm {
template <>
struct SamplerTraits<reg_test::AliasClash> {
  using config_type = reg_test::ClashConfig;
  static constexpr std::string_view name = "dpm";  // an alias of dpm++
  static constexpr std::string_view class_name = "AliasClashScheduler";
};
template <>
struct SamplerTraits<reg_test::ClassClash> {
  using config_type = reg_test::OtherConfig;
  static constexpr std::string_view name = "other";
  static constexpr std::string_view class_name = "DDIMScheduler";
};
template <>
struct SamplerTraits<reg_test::Spaced> {
  using config_type = reg_test::SpacedConfig;
  static constexpr std::string_view name = "two words";
  static constexpr std::string_view class_name = "SpacedScheduler";
};
template <>
struct SamplerTraits<reg_test::NotASampler> {
  using config_type = reg_test::NotASamplerConfig;
  static constexpr std::string_view name = "nope";
  static constexpr std::string_view class_name = "NopeScheduler";
};
}  // namespace ddpm

// The library's list passes every check (sampler_list static_asserts them too).
static_assert(Samplers::checks::names_distinct && Samplers::checks::names_plain &&
              Samplers::checks::class_names_distinct && Samplers::checks::configs_distinct &&
              Samplers::checks::samplers_registrable);
// Each check catches its mistake: the same sampler twice, a name equal to
// another's alias, a class name twice, a name with a space, a class that is
// no Sampler.
using Twice = sampler_list_checks<DDIMSampler, DDPMSampler, DDIMSampler>;
static_assert(!Twice::names_distinct && !Twice::class_names_distinct && !Twice::configs_distinct);
using Alias = sampler_list_checks<DPMSolverSampler, reg_test::AliasClash>;
static_assert(!Alias::names_distinct && Alias::class_names_distinct && Alias::configs_distinct &&
              Alias::samplers_registrable);
using Class = sampler_list_checks<DDIMSampler, reg_test::ClassClash>;
static_assert(Class::names_distinct && !Class::class_names_distinct && Class::configs_distinct);
static_assert(!sampler_list_checks<reg_test::Spaced>::names_plain);
static_assert(!sampler_list_checks<DDIMSampler, reg_test::NotASampler>::samplers_registrable);

// The variants follow the list, in order.
static_assert(std::is_same_v<SamplerConfig, std::variant<DDPMConfig, DDIMConfig, DPMSolverConfig, EulerConfig,
                                                          EulerAncestralConfig, HeunConfig, DDIMInverseConfig,
                                                          KDPM2Config, UniPCConfig>>);
static_assert(std::is_same_v<AnySampler<float>, std::variant<DDPMSampler<float>, DDIMSampler<float>,
                                                             DPMSolverSampler<float>, EulerSampler<float>,
                                                             EulerAncestralSampler<float>, HeunSampler<float>,
                                                             DDIMInverseSampler<float>, KDPM2Sampler<float>,
                                                             UniPCSampler<float>>>);
static_assert(std::is_same_v<Samplers::sampler_of<EulerConfig, double>, EulerSampler<double>>);
static_assert(SamplerVariant<AnySampler<double>> && !SamplerVariant<DDIMSampler<double>>);

namespace {

using test::randn;

// One non-default value in (nearly) every key, per sampler: what a round trip must keep.
std::vector<SamplerConfig> varied_configs() {
  const ScheduleConfig sched{.num_train_timesteps = 500, .beta_start = 0.00085, .beta_end = 0.012,
                             .beta_schedule = BetaSchedule::scaled_linear, .rescale_betas_zero_snr = true};
  ScheduleConfig trained{.num_train_timesteps = 4};
  trained.trained_betas = {0.1, 0.2, 0.3, 0.4};
  return {
      DDPMConfig{.schedule = sched, .prediction_type = PredictionType::v_prediction,
                 .variance_type = VarianceType::fixed_large,
                 .clipping = {.clip_sample = false, .clip_sample_range = 2.5, .thresholding = true,
                              .dynamic_thresholding_ratio = 0.9, .sample_max_value = 3.0},
                 .timesteps = {TimestepSpacing::trailing, 0}},
      DDPMConfig{.schedule = trained, .timesteps = {TimestepSpacing::linspace, 0}},
      DDIMConfig{.schedule = sched, .prediction_type = PredictionType::sample, .clipping = {.clip_sample = false},
                 .timesteps = {TimestepSpacing::leading, 1}, .set_alpha_to_one = false, .eta = 0.5,
                 .use_clipped_model_output = true},
      DPMSolverConfig{.schedule = sched, .prediction_type = PredictionType::v_prediction,
                      .algorithm_type = DPMSolverAlgorithm::sde_dpmsolver_pp, .solver_order = 1,
                      .solver_type = DPMSolverType::heun, .lower_order_final = false, .euler_at_final = true,
                      .final_sigmas_type = FinalSigmasType::sigma_min, .lambda_min_clipped = -5.1,
                      .clipping = {.thresholding = true, .sample_max_value = 1.5},
                      .timesteps = {TimestepSpacing::trailing, 0}},
      DPMSolverConfig{.solver_order = 3, .sigma_spacing = SigmaSpacing::karras},
      DPMSolverConfig{.solver_order = 3, .timesteps = {TimestepSpacing::leading, 0},
                      .sigma_spacing = SigmaSpacing::exponential},
      EulerConfig{.schedule = sched, .prediction_type = PredictionType::v_prediction,
                  .timesteps = {TimestepSpacing::leading, 1}, .final_sigmas_type = FinalSigmasType::sigma_min,
                  .sigma_spacing = SigmaSpacing::karras,
                  .s_churn = 0.7, .s_tmin = 0.1, .s_tmax = 10.0, .s_noise = 1.003},
      EulerConfig{.prediction_type = PredictionType::sample, .sigma_spacing = SigmaSpacing::exponential},
      EulerAncestralConfig{.schedule = sched, .prediction_type = PredictionType::v_prediction,
                           .timesteps = {TimestepSpacing::leading, 1}},
      EulerAncestralConfig{.timesteps = {TimestepSpacing::trailing, 0}},
      KDPM2Config{.schedule = {.num_train_timesteps = 500, .beta_start = 0.00085, .beta_end = 0.012,
                               .beta_schedule = BetaSchedule::scaled_linear},
                  .prediction_type = PredictionType::v_prediction, .timesteps = {TimestepSpacing::leading, 1},
                  .sigma_spacing = SigmaSpacing::karras},
      DDIMInverseConfig{.schedule = sched, .prediction_type = PredictionType::v_prediction, .clip_sample = false,
                        .clip_sample_range = 2.0, .timesteps = {TimestepSpacing::trailing, 0},
                        .set_alpha_to_one = false},
      HeunConfig{.schedule = {.num_train_timesteps = 500, .beta_start = 0.00085, .beta_end = 0.012,
                              .beta_schedule = BetaSchedule::scaled_linear},
                 .prediction_type = PredictionType::v_prediction, .timesteps = {TimestepSpacing::leading, 1},
                 .sigma_spacing = SigmaSpacing::karras, .clip_sample = true, .clip_sample_range = 2.0},
      HeunConfig{.prediction_type = PredictionType::sample, .timesteps = {TimestepSpacing::trailing, 0},
                 .sigma_spacing = SigmaSpacing::exponential},
      UniPCConfig{.schedule = sched, .prediction_type = PredictionType::v_prediction, .solver_order = 3,
                  .solver_type = UniPCSolverType::bh1, .predict_x0 = false, .lower_order_final = false,
                  .disable_corrector = {0, 2}, .final_sigmas_type = FinalSigmasType::sigma_min,
                  .clipping = {.thresholding = true, .dynamic_thresholding_ratio = 0.9, .sample_max_value = 1.5},
                  .timesteps = {TimestepSpacing::trailing, 0}, .sigma_spacing = SigmaSpacing::karras},
      UniPCConfig{.prediction_type = PredictionType::sample, .solver_order = 1, .timesteps = {TimestepSpacing::leading, 1},
                  .sigma_spacing = SigmaSpacing::exponential},
      UniPCConfig{.solver_order = 3, .clipping = {.thresholding = true, .sample_max_value = 2.0}},
  };
}

SamplerConfig json_round_trip(const SamplerConfig& c) {
  SamplerConfig back = io::scheduler_config_from_json(io::parse_python_json(io::dump_scheduler_config(c)), "round trip");
  io::apply_step_kwargs(back, io::step_kwargs_to_json(c));
  return back;
}

// The numbers a sampler built from `c` produces: its timesteps, init_noise_sigma
// and two steps from a fixed sample, model output and noise.
std::vector<double> fingerprint(const SamplerConfig& c) {
  AnySampler<double> s = make_sampler<double>(c);
  std::vector<double> out;
  std::visit(
      [&](auto& smp) {
        smp.set_timesteps(4);
        for (double t : smp.timesteps()) out.push_back(t);
        out.push_back(smp.init_noise_sigma());
        Tensor<double> x = randn({1, 2, 3, 3}, 3);
        const Tensor<double> m = randn({1, 2, 3, 3}, 4), z = randn({1, 2, 3, 3}, 5);
        for (int k = 0; k < 2; ++k) {
          const double t = smp.timesteps()[static_cast<std::size_t>(k)];
          (void)smp.scale_model_input(x.cview(), t);
          const StepOutput<double> r = smp.step(m.cview(), t, x.cview(), NoiseSource<double>(z.cview()));
          std::copy(r.prev_sample.begin(), r.prev_sample.end(), x.begin());
          out.insert(out.end(), x.begin(), x.end());
        }
      },
      s);
  return out;
}

}  // namespace

TEST_CASE("registry: command-line names, aliases and class names", "[sampling][registry]") {
  CHECK(Samplers::names == std::array<std::string_view, 9>{"ddpm", "ddim", "dpm++", "euler", "euler-a", "heun",
                                                          "ddim-inverse", "kdpm2", "unipc"});
  CHECK(Samplers::class_names == std::array<std::string_view, 9>{"DDPMScheduler", "DDIMScheduler",
                                                                  "DPMSolverMultistepScheduler",
                                                                  "EulerDiscreteScheduler",
                                                                  "EulerAncestralDiscreteScheduler",
                                                                  "HeunDiscreteScheduler",
                                                                  "DDIMInverseScheduler",
                                                                  "KDPM2DiscreteScheduler",
                                                                  "UniPCMultistepScheduler"});
  for (std::size_t i = 0; i < Samplers::size; ++i) {
    INFO(Samplers::names[i]);
    const SamplerConfig c = sampler_config_named(Samplers::names[i]);
    CHECK(c.index() == i);
    CHECK(sampler_name(c) == Samplers::names[i]);
    CHECK(scheduler_class_name(c) == Samplers::class_names[i]);
    const AnySampler<float> s = make_sampler<float>(c);
    CHECK(s.index() == i);
    CHECK(sampler_name<float>(s) == Samplers::names[i]);
  }
  for (const char* alias : {"dpmsolver++", "dpm++2m", "dpm"})
    CHECK(std::holds_alternative<DPMSolverConfig>(sampler_config_named(alias)));
  for (const char* alias : {"euler_a", "euler-ancestral"})
    CHECK(std::holds_alternative<EulerAncestralConfig>(sampler_config_named(alias)));
  CHECK(sampler_names_text() == "ddpm, ddim, dpm++, euler, euler-a, heun, ddim-inverse, kdpm2 or unipc");
  CHECK_THROWS_WITH(sampler_config_named("pndm", "--sampler"),
                    Contains("--sampler") && Contains("'pndm'") && Contains("ddpm, ddim, dpm++, euler, euler-a, heun, ddim-inverse, kdpm2 or unipc"));
  // The defaults are diffusers' (the DDIM ones clip, the DPM-Solver ones use linspace).
  CHECK(std::get<DDIMConfig>(sampler_config_named("ddim")).clipping.clip_sample);
  CHECK(std::get<DPMSolverConfig>(sampler_config_named("dpm++")).timesteps.spacing == TimestepSpacing::linspace);
}

TEST_CASE("registry: every sampler's config round-trips through scheduler_config.json", "[sampling][registry][io]") {
  // Defaults, one per registered sampler, then varied values.
  std::vector<SamplerConfig> configs;
  for (std::string_view name : Samplers::names) configs.push_back(sampler_config_named(name));
  for (const SamplerConfig& c : varied_configs()) configs.push_back(c);
  std::array<int, Samplers::size> seen{};
  for (const SamplerConfig& c : configs) {
    const nlohmann::json j = io::scheduler_config_to_json(c);
    INFO(j.dump());
    ++seen[c.index()];
    CHECK(j.at("_class_name") == std::string(scheduler_class_name(c)));
    const SamplerConfig back = json_round_trip(c);
    REQUIRE(back.index() == c.index());
    CHECK(io::scheduler_config_to_json(back) == j);
    CHECK(io::step_kwargs_to_json(back) == io::step_kwargs_to_json(c));
    // The numbers too: a field the writer dropped would change them.
    CHECK(fingerprint(back) == fingerprint(c));
  }
  for (std::size_t i = 0; i < Samplers::size; ++i) CHECK(seen[i] >= 2);

  // Varied values differ from the defaults in the JSON (so the round trip above carried them).
  for (const SamplerConfig& c : varied_configs())
    CHECK(io::scheduler_config_to_json(c) != io::scheduler_config_to_json(sampler_config_named(sampler_name(c))));

  // The file form: Python's literals, as diffusers writes them.
  const std::string text = io::dump_scheduler_config(DPMSolverConfig{});
  CHECK_THAT(text, Contains("\"lambda_min_clipped\": -Infinity") && Contains("\"variance_type\": null"));
  const auto path = std::filesystem::path(DDPM_TEST_TMP_DIR) / "registry_scheduler_config.json";
  io::write_scheduler_config(path, EulerConfig{.prediction_type = PredictionType::v_prediction});
  const SamplerConfig read = io::read_scheduler_config(path);
  CHECK(std::get<EulerConfig>(read).prediction_type == PredictionType::v_prediction);

  // Keys a sampler does not have are still errors naming file, key and value.
  CHECK_THROWS_WITH(io::apply_step_kwargs(configs[0], nlohmann::json{{"eta", 0.5}}, "k.json"),
                    Contains("k.json") && Contains("eta") && Contains("0.5"));
}

TEST_CASE("registry: every golden scheduler config round-trips", "[sampling][registry][io][golden]") {
  int checked = 0;
  for (const char* kind : {"schedules", "timesteps", "ddpm_step", "ddim_step", "forward_process", "trajectories"}) {
    const auto g = test::load_kind(kind);
    if (!g) continue;
    for (const nlohmann::json& c : g->cases()) {
      INFO(kind << " case " << test::case_name(c));
      const SamplerConfig cfg = test::case_config(c);
      const SamplerConfig back = json_round_trip(cfg);
      CHECK(io::scheduler_config_to_json(back) == io::scheduler_config_to_json(cfg));
      CHECK(io::step_kwargs_to_json(back) == io::step_kwargs_to_json(cfg));
      // Every key diffusers wrote is one we write (ours is the complete form),
      // with the same value where the value is a plain one.
      const nlohmann::json mine = io::scheduler_config_to_json(cfg);
      for (auto it = c["config"].begin(); it != c["config"].end(); ++it) {
        if (it.key().starts_with("_") || !mine.contains(it.key())) continue;
        const nlohmann::json& v = it.value();
        if (v.is_number() || v.is_boolean())
          CHECK(v == mine[it.key()]);
        else if (v.is_string() && it.key() != "algorithm_type" && it.key() != "solver_type" &&
                 it.key() != "timestep_type" && v != "original_sample")  // names diffusers maps to others
          CHECK(v == mine[it.key()]);
      }
      ++checked;
    }
  }
  CHECK(checked > 0);
}

namespace {

// A closed-form epsilon model (the exact one for data at 0) that returns
// `bad` in one element from its call number `nan_at` on.
struct BreaksAt {
  int nan_at;
  double bad = std::numeric_limits<double>::quiet_NaN();
  int calls = 0;
  Tensor<double> out;
  ConstTensorView<double> operator()(ConstTensorView<double> x, double) {
    out = Tensor<double>::copy_of(x);
    for (index_t i = 0; i < out.numel(); ++i) out[i] *= 0.5;
    if (calls++ >= nan_at) out[out.numel() - 2] = bad;
    return out.cview();
  }
};

}  // namespace

TEST_CASE("sampling stops when the model output is not finite, naming the step", "[sampling][registry][errors]") {
  const Tensor<double> noise = randn({2, 1, 3, 3}, 11);
  for (std::string_view name : Samplers::names) {
    INFO(name);
    AnySampler<double> s = make_sampler<double>(sampler_config_named(name));
    set_timesteps(s, 10);
    const double t3 = std::visit([](auto& smp) { return smp.timesteps()[3]; }, s);
    const std::string where = "at step 3 (timestep " + detail::concat(t3) + ")";
    CHECK_THROWS_WITH(sample_loop(s, BreaksAt{3}, noise.cview(), NoiseSource<double>(noise.cview())),
                      Contains("sample_loop") && Contains(where) && Contains("element 16 of 18"));
  }
  // Infinity too, and the first step.
  DDIMSampler<double> ddim;
  ddim.set_timesteps(10);
  CHECK_THROWS_WITH(sample_loop(ddim, BreaksAt{0, std::numeric_limits<double>::infinity()}, noise.cview()),
                    Contains("at step 0 (timestep 900)") && Contains("inf"));
  // The step counts the timesteps of the whole schedule in sdedit (which starts part-way) and repaint.
  ddim.set_timesteps(10);
  const index_t entry = sdedit_entry_index(ddim.schedule(), ddim.timesteps(), 0.5);
  REQUIRE(entry > 0);
  CHECK_THROWS_WITH(sdedit(ddim, BreaksAt{1}, noise.cview(), 0.5),
                    Contains("sdedit") && Contains("at step " + std::to_string(entry + 1) + " "));
  Rng rng(1);
  const Tensor<double> mask({1, 1, 3, 3}, 0.0);
  CHECK_THROWS_WITH(repaint(ddim, BreaksAt{4}, noise.cview(), mask.cview(), noise.cview(), rng, {.resample = 2}),
                    Contains("repaint") && Contains("at step 2 (timestep 700)"));
  // A finite run is unchanged by the check.
  CHECK_NOTHROW(sample_loop(ddim, BreaksAt{1000}, noise.cview()));
}

TEST_CASE("sample_loop, sdedit and repaint take an AnySampler and match the concrete sampler",
          "[sampling][registry]") {
  const Tensor<double> noise = randn({2, 1, 4, 4}, 21), data = randn({2, 1, 4, 4}, 22);
  const auto model = [](ConstTensorView<double> x, double t) {
    Tensor<double> out(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) out[i] = 0.3 * x[i] + 1e-4 * t;
    return out;
  };
  for (std::string_view name : Samplers::names) {
    INFO(name);
    const SamplerConfig c = sampler_config_named(name);
    AnySampler<double> any = make_sampler<double>(c);
    std::visit([](auto& s) { s.set_timesteps(8); }, any);
    std::visit(
        [&](auto concrete) {  // a copy: the same sampler, set up the same way
          using S = decltype(concrete);
          AnySampler<double> a2 = any;
          Rng r1(5), r2(5);
          const Tensor<double> x1 = sample_loop(concrete, model, noise.cview(), NoiseSource<double>(r1));
          const Tensor<double> x2 = sample_loop(a2, model, noise.cview(), NoiseSource<double>(r2));
          CHECK(std::equal(x1.begin(), x1.end(), x2.begin()));
          S c2 = std::get<S>(any);
          AnySampler<double> a3 = any;
          const Tensor<double> y1 = sdedit(c2, model, data.cview(), 0.3, NoiseSource<double>(noise.cview()));
          const Tensor<double> y2 = sdedit(a3, model, data.cview(), 0.3, NoiseSource<double>(noise.cview()));
          CHECK(std::equal(y1.begin(), y1.end(), y2.begin()));
          const Tensor<double> mask({1, 1, 4, 4}, 0.5);
          AnySampler<double> a4 = any;
          Rng q1(9), q2(9);
          if constexpr (SteppedSampler<S>) {
            S c3 = std::get<S>(any);
            const Tensor<double> z1 = repaint(c3, model, data.cview(), mask.cview(), noise.cview(), q1);
            const Tensor<double> z2 = repaint(a4, model, data.cview(), mask.cview(), noise.cview(), q2);
            CHECK(std::equal(z1.begin(), z1.end(), z2.begin()));
          } else {
            CHECK_THROWS_WITH(repaint(a4, model, data.cview(), mask.cview(), noise.cview(), q2),
                              Contains("repaint") && Contains("previous_timestep"));
          }
        },
        any);
  }
}

TEST_CASE("sdedit: whatever the sampler, the model first sees sqrt(abar_t) y at the entry t", "[sampling][sdedit]") {
  // Integer timesteps (leading spacing) so that Euler's interpolated sigma is the schedule's.
  const Tensor<double> y = randn({1, 1, 3, 3}, 31);
  for (std::string_view name : Samplers::names) {
    INFO(name);
    SamplerConfig c = sampler_config_named(name);
    std::visit([](auto& k) { k.timesteps = {TimestepSpacing::leading, 0}; }, c);
    AnySampler<double> s = make_sampler<double>(c);
    std::visit([](auto& smp) { smp.set_timesteps(20); }, s);
    const NoiseSchedule<double> sched(std::visit([](const auto& k) { return k.schedule; }, c));
    std::vector<double> first_input;
    double first_t = -1;
    const auto model = [&](ConstTensorView<double> x, double t) {
      if (first_t < 0) first_t = t, first_input.assign(x.begin(), x.end());
      return Tensor<double>(x.shape(), 0.0);
    };
    (void)sdedit(s, model, y.cview(), 0.7, NoiseSource<double>(y.cview()));
    REQUIRE(first_t >= 0);
    const double a = std::sqrt(sched.alpha_cumprod(static_cast<index_t>(first_t)));
    // 1e-6: Euler's sigmas are float32 numbers, as diffusers' are (a wrong start is off by 1 - sqrt(abar_t), > 0.1).
    for (index_t i = 0; i < y.numel(); ++i)
      CHECK(first_input[static_cast<std::size_t>(i)] == Approx(a * y[i]).epsilon(1e-6));
    CHECK(1 - a > 0.1);
  }
}

TEST_CASE("noise drawn on a thread pool gives every sampler the same samples", "[sampling][registry]") {
  // 91 x 91 = 8281 values a draw: over the pool's threshold, and odd, so the
  // draws alternate between starting with and without Box-Muller's spare.
  const Tensor<double> noise = randn({1, 1, 91, 91}, 23);
  const auto model = [](ConstTensorView<double> x, double t) {
    Tensor<double> out(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) out[i] = 0.3 * x[i] + 1e-4 * t;
    return out;
  };
  ThreadPool pool(3);
  for (std::string_view name : Samplers::names) {
    INFO(name);
    AnySampler<double> a = make_sampler<double>(sampler_config_named(name)), b = a;
    std::visit([](auto& s) { s.set_timesteps(4); }, a);
    std::visit([](auto& s) { s.set_timesteps(4); }, b);
    Rng r1(5), r2(5);
    const Tensor<double> x1 = sample_loop(a, model, noise.cview(), NoiseSource<double>(r1));
    const Tensor<double> x2 = sample_loop(b, model, noise.cview(), NoiseSource<double>(r2, pool));
    CHECK(std::equal(x1.begin(), x1.end(), x2.begin()));
    CHECK(r1.state() == r2.state());
  }
}
