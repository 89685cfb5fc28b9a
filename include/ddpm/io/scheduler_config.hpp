#pragma once
// scheduler_config.json (diffusers' format) -> SamplerConfig.
//
//   SamplerConfig c = io::read_scheduler_config("model/scheduler/scheduler_config.json");
//   auto sampler = make_sampler<float>(c);
//
// Dispatches on `_class_name`: DDPMScheduler, DDIMScheduler,
// DPMSolverMultistepScheduler, EulerDiscreteScheduler. Missing keys take
// diffusers' defaults. Keys starting with '_' are metadata. A key that changes
// the numerics in a way the library does not implement (use_karras_sigmas:
// true, algorithm_type other than dpmsolver++, solver_order 3, ...), an
// unknown key, a wrong type or an unknown value is a ddpm::Error naming the
// file, the key, the value and what was expected: never a silent difference.
// Keys that cannot change the numerics as configured (sigma_max without Karras
// sigmas, flow_shift without flow sigmas, ...) are accepted and ignored.
//
// diffusers writes JSON with Python's NaN / Infinity / -Infinity literals
// (DPMSolver's lambda_min_clipped is -Infinity): io/json.hpp reads them.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/core/error.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/sampling/any_sampler.hpp"

namespace ddpm::io {

namespace scheduler_json_detail {

using json = nlohmann::json;


// Reads the keys of one config object, remembering which were read, so that
// every key left over at the end is reported.
class Reader {
 public:
  Reader(const json& j, std::string origin, std::string cls) : j_(j), origin_(std::move(origin)), cls_(std::move(cls)) {
    if (!j_.is_object()) fail(origin_, ": expected a JSON object, got ", describe_json(j_));
  }

  [[noreturn]] void bad(const std::string& key, const json& v, const std::string& expected) const {
    fail(origin_, ": ", cls_, " key \"", key, "\" = ", describe_json(v), ": expected ", expected);
  }

  const json* find(const std::string& key) {
    seen_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  void get(const std::string& key, bool& out) {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) bad(key, *v, "true or false");
      out = v->get<bool>();
    }
  }
  void get(const std::string& key, double& out) {
    if (const json* v = find(key)) out = number(key, *v);
  }
  void get(const std::string& key, index_t& out, index_t min_value) {
    if (const json* v = find(key)) {
      const double d = v->is_boolean() ? NAN : number(key, *v);
      if (!(std::floor(d) == d && d >= static_cast<double>(min_value) && d < 1e15))
        bad(key, *v, "an integer >= " + std::to_string(min_value));
      out = static_cast<index_t>(d);
    }
  }
  void get(const std::string& key, int& out, int min_value) {
    index_t v = out;
    get(key, v, min_value);
    out = static_cast<int>(v);
  }
  std::string string(const std::string& key, const std::string& fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) bad(key, *v, "a string");
    return v->get<std::string>();
  }
  // Parses an enum with `parse`, turning its error into one naming the file.
  template <class E, class Parse>
  void get_enum(const std::string& key, E& out, Parse parse) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_string()) bad(key, *v, "a string");
    try {
      out = parse(v->get<std::string>());
    } catch (const Error& e) {
      fail(origin_, ": ", cls_, " key \"", key, "\": ", e.what());
    }
  }
  // A key the library implements for one value only.
  void require_value(const std::string& key, const json& supported, const std::string& why) {
    const json* v = find(key);
    if (v && *v != supported) bad(key, *v, describe_json(supported) + " (" + why + ")");
  }
  // Keys that cannot change the numerics here.
  void ignore(std::initializer_list<const char*> keys) {
    for (const char* k : keys) seen_.insert(k);
  }

  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (it.key().starts_with("_") || seen_.count(it.key())) continue;
      fail(origin_, ": ", cls_, " key \"", it.key(), "\" = ", describe_json(it.value()),
           ": not a key ddpm knows for this scheduler; remove it or use a supported scheduler");
    }
  }

 private:
  double number(const std::string& key, const json& v) const {
    if (v.is_number() && !v.is_boolean()) return v.get<double>();
    if (v.is_string()) {
      const auto s = v.get<std::string>();
      if (s == "Infinity") return std::numeric_limits<double>::infinity();
      if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
      if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    }
    bad(key, v, "a number");
  }

  const json& j_;
  std::string origin_, cls_;
  std::set<std::string> seen_;
};

inline ScheduleConfig read_schedule(Reader& r, BetaSchedule default_schedule = BetaSchedule::linear) {
  ScheduleConfig s;
  s.beta_schedule = default_schedule;
  r.get("num_train_timesteps", s.num_train_timesteps, 1);
  r.get("beta_start", s.beta_start);
  r.get("beta_end", s.beta_end);
  r.get_enum("beta_schedule", s.beta_schedule, parse_beta_schedule);
  if (const json* v = r.find("trained_betas")) {
    if (!v->is_array()) r.bad("trained_betas", *v, "null or an array of numbers");
    for (const json& b : *v) {
      if (!b.is_number()) r.bad("trained_betas", *v, "null or an array of numbers");
      s.trained_betas.push_back(b.get<double>());
    }
  }
  r.get("rescale_betas_zero_snr", s.rescale_betas_zero_snr);
  return s;
}

inline TimestepConfig read_timesteps(Reader& r, TimestepSpacing default_spacing) {
  TimestepConfig t{default_spacing, 0};
  r.get_enum("timestep_spacing", t.spacing, parse_timestep_spacing);
  r.get("steps_offset", t.steps_offset, 0);
  return t;
}

// prediction_type, and the deprecated predict_epsilon of diffusers 0.x configs.
inline PredictionType read_prediction(Reader& r, bool allow_original_sample = false) {
  PredictionType p = PredictionType::epsilon;
  bool predict_epsilon = true;
  const bool has_legacy = r.find("predict_epsilon") != nullptr;
  r.get("predict_epsilon", predict_epsilon);
  if (has_legacy && !predict_epsilon) p = PredictionType::sample;
  r.get_enum("prediction_type", p, [&](const std::string& s) {
    return allow_original_sample && s == "original_sample" ? PredictionType::sample : parse_prediction_type(s);
  });
  return p;
}

inline SampleClipping read_clipping(Reader& r, bool clip_default) {
  SampleClipping c;
  c.clip_sample = clip_default;
  r.get("clip_sample", c.clip_sample);
  r.get("clip_sample_range", c.clip_sample_range);
  r.get("thresholding", c.thresholding);
  r.get("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
  r.get("sample_max_value", c.sample_max_value);
  return c;
}

// The keys DDPMScheduler and DDIMScheduler share (both default to clipping and leading spacing).
template <class C>
C read_discrete(Reader& r) {
  C c;
  c.schedule = read_schedule(r);
  c.prediction_type = read_prediction(r);
  c.clipping = read_clipping(r, true);
  c.timesteps = read_timesteps(r, TimestepSpacing::leading);
  r.ignore({"tensor_format"});
  return c;
}

inline DDPMConfig read_ddpm(Reader& r) {
  DDPMConfig c = read_discrete<DDPMConfig>(r);
  r.get_enum("variance_type", c.variance_type, parse_variance_type);
  return c;
}

inline DDIMConfig read_ddim(Reader& r) {
  DDIMConfig c = read_discrete<DDIMConfig>(r);
  r.get("set_alpha_to_one", c.set_alpha_to_one);
  return c;
}

inline DPMSolverConfig read_dpm_solver(Reader& r) {
  DPMSolverConfig c;
  c.schedule = read_schedule(r);
  c.prediction_type = read_prediction(r);
  c.timesteps = read_timesteps(r, TimestepSpacing::linspace);
  // diffusers maps deis to dpmsolver++, and logrho / bh1 / bh2 to midpoint.
  const std::string algorithm = r.string("algorithm_type", "dpmsolver++");
  if (algorithm != "dpmsolver++" && algorithm != "deis")
    r.bad("algorithm_type", algorithm, "\"dpmsolver++\" (the only DPM-Solver variant ddpm implements)");
  r.get("solver_order", c.solver_order, 1);
  if (c.solver_order > 2) r.bad("solver_order", c.solver_order, "1 or 2 (third order is not implemented)");
  const std::string solver_type = r.string("solver_type", "midpoint");
  if (solver_type == "heun") c.solver_type = DPMSolverType::heun;
  else if (solver_type != "midpoint" && solver_type != "logrho" && solver_type != "bh1" && solver_type != "bh2")
    r.bad("solver_type", solver_type, "midpoint or heun");
  r.get("lower_order_final", c.lower_order_final);
  r.get("euler_at_final", c.euler_at_final);
  r.get_enum("final_sigmas_type", c.final_sigmas_type, parse_final_sigmas_type);
  r.get("lambda_min_clipped", c.lambda_min_clipped);
  r.get("thresholding", c.clipping.thresholding);
  r.get("dynamic_thresholding_ratio", c.clipping.dynamic_thresholding_ratio);
  r.get("sample_max_value", c.clipping.sample_max_value);
  const char* plain = "interpolated sigmas are the only ones implemented";
  for (const char* k : {"use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas", "use_beta_sigmas",
                        "use_flow_sigmas", "use_dynamic_shifting"})
    r.require_value(k, false, plain);
  r.require_value("variance_type", nullptr, "learned variances are not implemented");
  // Only read with flow sigmas or dynamic shifting, both rejected above.
  r.ignore({"flow_shift", "time_shift_type", "tensor_format"});
  return c;
}

inline EulerConfig read_euler(Reader& r) {
  EulerConfig c;
  c.schedule = read_schedule(r);
  c.prediction_type = read_prediction(r, true);
  c.timesteps = read_timesteps(r, TimestepSpacing::linspace);
  r.get_enum("final_sigmas_type", c.final_sigmas_type, parse_final_sigmas_type);
  r.require_value("interpolation_type", "linear", "log_linear is not implemented");
  for (const char* k : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"})
    r.require_value(k, false, "interpolated sigmas are the only ones implemented");
  const std::string timestep_type = r.string("timestep_type", "discrete");
  if (timestep_type != "discrete" && !(timestep_type == "continuous" && c.prediction_type != PredictionType::v_prediction))
    r.bad("timestep_type", timestep_type, "\"discrete\" (continuous timesteps with v_prediction are not implemented)");
  // sigma_min / sigma_max only bound Karras, exponential and beta sigmas, rejected above.
  r.ignore({"sigma_min", "sigma_max", "tensor_format"});
  return c;
}

}  // namespace scheduler_json_detail

// A config object (the parsed scheduler_config.json). `origin` names it in errors.
inline SamplerConfig scheduler_config_from_json(const nlohmann::json& j, const std::string& origin = "<json>") {
  using namespace scheduler_json_detail;
  require(j.is_object(), origin, ": expected a JSON object");
  const auto it = j.find("_class_name");
  require(it != j.end() && it->is_string(), origin, ": key \"_class_name\" missing or not a string; expected one of "
          "DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler");
  const std::string cls = it->get<std::string>();
  Reader r(j, origin, cls);
  SamplerConfig c;
  if (cls == "DDPMScheduler") c = read_ddpm(r);
  else if (cls == "DDIMScheduler") c = read_ddim(r);
  else if (cls == "DPMSolverMultistepScheduler") c = read_dpm_solver(r);
  else if (cls == "EulerDiscreteScheduler") c = read_euler(r);
  else
    fail(origin, ": key \"_class_name\" = \"", cls,
         "\": expected one of DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler");
  r.finish();
  return c;
}

inline SamplerConfig read_scheduler_config(const std::filesystem::path& file) {
  return scheduler_config_from_json(parse_python_json(read_text_file(file), file.string()), file.string());
}

// The keyword arguments of diffusers' step() that are options of the sampler
// (DDIM: eta, use_clipped_model_output; Euler: s_churn, s_tmin, s_tmax, s_noise).
// Any other key is an error.
inline void apply_step_kwargs(SamplerConfig& config, const nlohmann::json& kwargs,
                              const std::string& origin = "step_kwargs") {
  using namespace scheduler_json_detail;
  if (kwargs.is_null()) return;
  Reader r(kwargs, origin, std::string(scheduler_class_name(config)) + ".step()");
  std::visit(
      [&](auto& c) {
        using C = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<C, DDIMConfig>) {
          r.get("eta", c.eta);
          r.get("use_clipped_model_output", c.use_clipped_model_output);
        } else if constexpr (std::is_same_v<C, EulerConfig>) {
          r.get("s_churn", c.s_churn);
          r.get("s_tmin", c.s_tmin);
          r.get("s_tmax", c.s_tmax);
          r.get("s_noise", c.s_noise);
        }
      },
      config);
  r.ignore({"return_dict"});
  r.finish();
}

}  // namespace ddpm::io
