// Every scheduler config in the golden data reads through
// io/scheduler_config.hpp (they double as scheduler_config.json fixtures),
// and a published checkpoint's sparse scheduler_config.json reads to the same
// configuration as diffusers' fully resolved version of it.
#include "sampling/golden_support.hpp"

#include <sstream>

#include "ddpm/io/scheduler_config.hpp"

using namespace ddpm;
using namespace ddpm::test;

namespace {

// Every field of a config, as text, so two readings can be compared.
std::string describe(const SamplerConfig& cfg) {
  std::ostringstream os;
  os.precision(17);
  os << scheduler_class_name(cfg);
  std::visit(
      [&](const auto& c) {
        const ScheduleConfig& s = c.schedule;
        os << " T=" << s.num_train_timesteps << " start=" << s.beta_start << " end=" << s.beta_end
           << " schedule=" << to_string(s.beta_schedule) << " trained=" << s.trained_betas.size()
           << " zsnr=" << s.rescale_betas_zero_snr << " prediction=" << to_string(c.prediction_type)
           << " spacing=" << to_string(c.timesteps.spacing) << " offset=" << c.timesteps.steps_offset;
        if constexpr (requires { c.clipping; })
          os << " clip=" << c.clipping.clip_sample << "/" << c.clipping.clip_sample_range
             << " threshold=" << c.clipping.thresholding << "/" << c.clipping.dynamic_thresholding_ratio << "/"
             << c.clipping.sample_max_value;
        using C = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<C, DDPMConfig>) os << " variance=" << to_string(c.variance_type);
        if constexpr (std::is_same_v<C, DDIMConfig>) os << " alpha_to_one=" << c.set_alpha_to_one;
      },
      cfg);
  return os.str();
}

SamplerConfig read(const fs::path& p) {
  try {
    return io::read_scheduler_config(p);
  } catch (const Error& e) {
    FAIL(e.what());
  }
  return {};
}

}  // namespace

TEST_CASE("every golden case's scheduler config reads, and builds its sampler", "[golden][scheduler_configs]") {
  int configs = 0;
  for (const char* kind : {"schedules", "timesteps", "ddpm_step", "ddim_step", "forward_process", "trajectories"}) {
    const auto g = load_kind(kind);
    if (!g) continue;
    for (const json& c : g->cases()) {
      INFO(kind << " case " << case_name(c));
      SamplerConfig cfg;
      REQUIRE_NOTHROW(cfg = case_config(c));
      CHECK(std::string(scheduler_class_name(cfg)) == c.at("config").at("_class_name").get<std::string>());
      if (c.contains("scheduler")) CHECK(std::string(scheduler_class_name(cfg)) == c["scheduler"].get<std::string>());
      CHECK_NOTHROW(make_sampler<float>(cfg));
      CHECK_NOTHROW(make_sampler<double>(cfg));
      ++configs;
    }
  }
  CHECK(configs > 0);
}

TEST_CASE("published scheduler_config.json files read as diffusers resolves them", "[golden][scheduler_configs]") {
  const auto g = load_kind("checkpoint_configs");
  if (!g) return;
  int checked = 0;
  for (const json& c : g->cases()) {
    if (!c.contains("scheduler_config")) continue;
    const fs::path raw = golden_dir() / c["scheduler_config"].get<std::string>();
    fs::path resolved = raw;
    resolved.replace_filename("scheduler_config.resolved.json");
    INFO(raw);
    const SamplerConfig a = read(raw);
    if (fs::exists(resolved)) CHECK(describe(a) == describe(read(resolved)));
    ++checked;
  }
  INFO("checkpoints with a scheduler config: " << checked);
  CHECK(checked >= 0);
}
