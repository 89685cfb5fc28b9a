#pragma once
// scheduler_config.json (diffusers' format) <-> SamplerConfig.
//
//   SamplerConfig c = io::read_scheduler_config("model/scheduler/scheduler_config.json");
//   auto sampler = make_sampler<float>(c);
//   io::write_scheduler_config("out/scheduler/scheduler_config.json", c);
//
// Dispatches on `_class_name` through the sampler registry
// (sampling/registry.hpp); each sampler's keys are its SamplerTraits'
// scheduler_config (sampling/sampler.hpp), read by KeyReader and written by
// KeyWriter from the same calls. Missing keys take diffusers' defaults. Keys
// starting with '_' are metadata. A key that changes the numerics in a way the
// library does not implement (use_karras_sigmas: true, algorithm_type other
// than dpmsolver++, solver_order 3, ...), an unknown key, a wrong type or an
// unknown value is a ddpm::Error naming the file, the key, the value and what
// was expected: never a silent difference. Keys that cannot change the
// numerics as configured (sigma_max without Karras sigmas, flow_shift without
// flow sigmas, ...) are accepted and ignored.
//
// diffusers writes JSON with Python's NaN / Infinity / -Infinity literals
// (DPMSolver's lambda_min_clipped is -Infinity): io/json.hpp reads them, and
// write_scheduler_config writes them.
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
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

// Reads a sampler's keys (SamplerTraits::scheduler_config, step_kwargs: the
// Keys interface of sampling/sampler.hpp) into its config.
class KeyReader : public Reader {
 public:
  using Reader::Reader;

  void operator()(const std::string& key, bool& out) { get(key, out); }
  void operator()(const std::string& key, double& out) { get(key, out); }

  template <std::integral I>
  void integer(const std::string& key, I& out, index_t min_value,
               index_t max_value = std::numeric_limits<index_t>::max(), const std::string& expected = "") {
    const json* v = find(key);
    if (!v) return;
    const double d = v->is_boolean() || !v->is_number() ? NAN : v->get<double>();
    if (!(std::floor(d) == d && d >= static_cast<double>(min_value) && d <= static_cast<double>(max_value) && d < 1e15))
      bad(key, *v, !expected.empty() ? expected : "an integer >= " + std::to_string(min_value));
    out = static_cast<I>(d);
  }

  // A list of integers (UniPC's disable_corrector).
  template <std::integral I>
  void integers(const std::string& key, std::vector<I>& out, index_t min_value) {
    const json* v = find(key);
    if (!v) return;
    const std::string expected = "a list of integers >= " + std::to_string(min_value);
    if (!v->is_array()) bad(key, *v, expected);
    out.clear();
    for (const json& e : *v) {
      const double d = e.is_boolean() || !e.is_number() ? NAN : e.get<double>();
      if (!(std::floor(d) == d && d >= static_cast<double>(min_value) && d < 1e15)) bad(key, *v, expected);
      out.push_back(static_cast<I>(d));
    }
  }

  template <class E, class Parse>
  void enumeration(const std::string& key, E& out, Parse parse) {
    get_enum(key, out, parse);
  }

  template <class E>
  void choice(const std::string& key, E& out,
              std::type_identity_t<std::initializer_list<std::pair<std::string_view, E>>> names,
              const std::string& expected) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_string()) bad(key, *v, "a string");
    const auto text = v->get<std::string>();
    for (const auto& [name, value] : names)
      if (text == name) {
        out = value;
        return;
      }
    bad(key, *v, expected);
  }

  void schedule(ScheduleConfig& s) {
    integer("num_train_timesteps", s.num_train_timesteps, 1);
    get("beta_start", s.beta_start);
    get("beta_end", s.beta_end);
    get_enum("beta_schedule", s.beta_schedule, parse_beta_schedule);
    if (const json* v = find("trained_betas")) {
      if (!v->is_array()) bad("trained_betas", *v, "null or an array of numbers");
      s.trained_betas.clear();
      for (const json& b : *v) {
        if (!b.is_number()) bad("trained_betas", *v, "null or an array of numbers");
        s.trained_betas.push_back(b.get<double>());
      }
    }
    get("rescale_betas_zero_snr", s.rescale_betas_zero_snr);
  }

  void timesteps(TimestepConfig& t) {
    get_enum("timestep_spacing", t.spacing, parse_timestep_spacing);
    integer("steps_offset", t.steps_offset, 0);
  }

  // prediction_type, and the deprecated predict_epsilon of diffusers 0.x configs.
  void prediction(PredictionType& p, bool allow_original_sample = false) {
    bool predict_epsilon = true;
    const bool has_legacy = find("predict_epsilon") != nullptr;
    get("predict_epsilon", predict_epsilon);
    if (has_legacy && !predict_epsilon) p = PredictionType::sample;
    get_enum("prediction_type", p, [&](const std::string& s) {
      return allow_original_sample && s == "original_sample" ? PredictionType::sample : parse_prediction_type(s);
    });
  }

  void clipping(SampleClipping& c, bool with_static_clipping = true) {
    if (with_static_clipping) {
      get("clip_sample", c.clip_sample);
      get("clip_sample_range", c.clip_sample_range);
    }
    get("thresholding", c.thresholding);
    get("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
    get("sample_max_value", c.sample_max_value);
  }

  template <class V>
  void require_value(const std::string& key, const V& supported, const std::string& why) {
    Reader::require_value(key, json(supported), why);
  }

  [[noreturn]] void reject(const std::string& key, const std::string& value, const std::string& expected) const {
    bad(key, json(value), expected);
  }
};

// A double as JSON: the non-finite ones as the strings parse_python_json
// makes of Python's literals (write_scheduler_config turns them back).
inline json number_json(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return v;
}

// Writes a sampler's keys into a JSON object: the same calls as KeyReader.
class KeyWriter {
 public:
  explicit KeyWriter(json& out) : j_(out) {}

  void operator()(const std::string& key, bool v) { j_[key] = v; }
  void operator()(const std::string& key, double v) { j_[key] = number_json(v); }
  template <std::integral I>
  void integer(const std::string& key, I v, index_t, index_t = 0, const std::string& = "") {
    j_[key] = static_cast<std::int64_t>(v);
  }
  template <std::integral I>
  void integers(const std::string& key, const std::vector<I>& v, index_t) {
    json a = json::array();
    for (I x : v) a.push_back(static_cast<std::int64_t>(x));
    j_[key] = std::move(a);
  }
  template <class E, class Parse>
  void enumeration(const std::string& key, E v, Parse) {
    j_[key] = std::string(to_string(v));
  }
  template <class E>
  void choice(const std::string& key, E v, std::type_identity_t<std::initializer_list<std::pair<std::string_view, E>>> names,
              const std::string&) {
    for (const auto& [name, value] : names)
      if (value == v) {
        j_[key] = std::string(name);
        return;
      }
    fail("scheduler config: key \"", key, "\": the value has no name");
  }
  void schedule(const ScheduleConfig& s) {
    j_["num_train_timesteps"] = static_cast<std::int64_t>(s.num_train_timesteps);
    j_["beta_start"] = number_json(s.beta_start);
    j_["beta_end"] = number_json(s.beta_end);
    j_["beta_schedule"] = std::string(to_string(s.beta_schedule));
    j_["trained_betas"] = s.trained_betas.empty() ? json(nullptr) : json(s.trained_betas);
    j_["rescale_betas_zero_snr"] = s.rescale_betas_zero_snr;
  }
  void timesteps(const TimestepConfig& t) {
    j_["timestep_spacing"] = std::string(to_string(t.spacing));
    j_["steps_offset"] = static_cast<std::int64_t>(t.steps_offset);
  }
  void prediction(PredictionType p, bool = false) { j_["prediction_type"] = std::string(to_string(p)); }
  void clipping(const SampleClipping& c, bool with_static_clipping = true) {
    if (with_static_clipping) {
      j_["clip_sample"] = c.clip_sample;
      j_["clip_sample_range"] = number_json(c.clip_sample_range);
    }
    j_["thresholding"] = c.thresholding;
    j_["dynamic_thresholding_ratio"] = number_json(c.dynamic_thresholding_ratio);
    j_["sample_max_value"] = number_json(c.sample_max_value);
  }
  template <class V>
  void require_value(const std::string& key, const V& supported, const std::string&) {
    j_[key] = json(supported);
  }
  void ignore(std::initializer_list<const char*>) {}
  [[noreturn]] void reject(const std::string& key, const std::string& value, const std::string& expected) const {
    fail("scheduler config: key \"", key, "\" = \"", value, "\": expected ", expected);
  }

 private:
  json& j_;
};

// The registered class names, for errors.
inline std::string class_names_text() {
  std::string s;
  for (std::size_t i = 0; i < Samplers::size; ++i) s += (i ? ", " : "") + std::string(Samplers::class_names[i]);
  return s;
}

}  // namespace scheduler_json_detail

// A config object (the parsed scheduler_config.json). `origin` names it in errors.
inline SamplerConfig scheduler_config_from_json(const nlohmann::json& j, const std::string& origin = "<json>") {
  using namespace scheduler_json_detail;
  require(j.is_object(), origin, ": expected a JSON object");
  const auto it = j.find("_class_name");
  require(it != j.end() && it->is_string(), origin, ": key \"_class_name\" missing or not a string; expected one of ",
          class_names_text());
  const std::string cls = it->get<std::string>();
  SamplerConfig c;
  bool found = false;
  Samplers::for_each([&]<class Traits>(std::type_identity<Traits>) {
    if (found || cls != Traits::class_name) return;
    KeyReader r(j, origin, cls);
    typename Traits::config_type config{};
    Traits::scheduler_config(r, config);
    r.ignore({"tensor_format"});  // diffusers 0.x, every scheduler
    r.finish();
    c = std::move(config);
    found = true;
  });
  if (!found) fail(origin, ": key \"_class_name\" = \"", cls, "\": expected one of ", class_names_text());
  return c;
}

inline SamplerConfig read_scheduler_config(const std::filesystem::path& file) {
  return scheduler_config_from_json(parse_python_json(read_text_file(file), file.string()), file.string());
}

// The scheduler_config.json object of a config: `_class_name` and every key
// the sampler reads, in diffusers' names (non-finite numbers as the strings
// "Infinity", "-Infinity", "NaN", as parse_python_json reads them).
// Options that are step() arguments are not part of it: step_kwargs_to_json.
inline nlohmann::json scheduler_config_to_json(const SamplerConfig& config) {
  using namespace scheduler_json_detail;
  json j = json::object();
  std::visit(
      [&](const auto& c) {
        using Traits = Samplers::traits_of<std::decay_t<decltype(c)>>;
        j["_class_name"] = std::string(Traits::class_name);
        auto copy = c;  // the Keys calls take the fields by reference
        KeyWriter w(j);
        Traits::scheduler_config(w, copy);
      },
      config);
  return j;
}

// The step() keyword arguments that are options of the sampler (DDIM: eta,
// use_clipped_model_output; Euler: s_churn, s_tmin, s_tmax, s_noise); an
// empty object for samplers without any.
inline nlohmann::json step_kwargs_to_json(const SamplerConfig& config) {
  using namespace scheduler_json_detail;
  json j = json::object();
  std::visit(
      [&](const auto& c) {
        using Traits = Samplers::traits_of<std::decay_t<decltype(c)>>;
        if constexpr (requires(KeyWriter& w, std::decay_t<decltype(c)>& m) { Traits::step_kwargs(w, m); }) {
          auto copy = c;
          KeyWriter w(j);
          Traits::step_kwargs(w, copy);
        }
      },
      config);
  return j;
}

// JSON text as diffusers writes it: Python's NaN / Infinity / -Infinity
// literals for the strings number_json makes, keys sorted, 2-space indent.
inline std::string dump_scheduler_config(const SamplerConfig& config) {
  std::string text = scheduler_config_to_json(config).dump(2) + "\n";
  for (std::string_view lit : {"-Infinity", "Infinity", "NaN"}) {
    const std::string quoted = ": \"" + std::string(lit) + "\"";
    for (auto pos = text.find(quoted); pos != std::string::npos; pos = text.find(quoted, pos))
      text.replace(pos, quoted.size(), ": " + std::string(lit));
  }
  return text;
}

inline void write_scheduler_config(const std::filesystem::path& file, const SamplerConfig& config) {
  write_text_file(file, dump_scheduler_config(config));
}

// The keyword arguments of diffusers' step() that are options of the sampler
// (SamplerTraits::step_kwargs). Any other key is an error.
inline void apply_step_kwargs(SamplerConfig& config, const nlohmann::json& kwargs,
                              const std::string& origin = "step_kwargs") {
  using namespace scheduler_json_detail;
  if (kwargs.is_null()) return;
  KeyReader r(kwargs, origin, std::string(scheduler_class_name(config)) + ".step()");
  std::visit(
      [&](auto& c) {
        using Traits = Samplers::traits_of<std::decay_t<decltype(c)>>;
        if constexpr (requires { Traits::step_kwargs(r, c); }) Traits::step_kwargs(r, c);
      },
      config);
  r.ignore({"return_dict"});
  r.finish();
}

}  // namespace ddpm::io
