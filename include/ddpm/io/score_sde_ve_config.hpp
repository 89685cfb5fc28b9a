#pragma once
// scheduler_config.json (diffusers' format) <-> ScoreSdeVeConfig, with the
// rules of io/scheduler_config.hpp: `_class_name` must be ScoreSdeVeScheduler;
// missing keys take diffusers' defaults; an unknown key, a wrong type or an
// out-of-range value is a ddpm::Error naming the file, the key and the value.
//
//   ScoreSdeVeConfig c = io::read_score_sde_ve_config("model/scheduler/scheduler_config.json");
//   io::write_score_sde_ve_config("out/scheduler/scheduler_config.json", c);
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "ddpm/core/error.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/sampling/score_sde_ve.hpp"

namespace ddpm::io {

// A parsed config object; `origin` names it in errors.
inline ScoreSdeVeConfig score_sde_ve_config_from_json(const nlohmann::json& j, const std::string& origin = "<json>") {
  using namespace scheduler_json_detail;
  require(j.is_object(), origin, ": expected a JSON object");
  const std::string cls(ScoreSdeVeKeys::class_name);
  const auto it = j.find("_class_name");
  require(it != j.end() && it->is_string(), origin, ": key \"_class_name\" missing or not a string; expected \"", cls,
          "\"");
  require(it->get<std::string>() == cls, origin, ": key \"_class_name\" = \"", it->get<std::string>(),
          "\": expected \"", cls, "\"");
  KeyReader r(j, origin, cls);
  ScoreSdeVeConfig c;
  ScoreSdeVeKeys::scheduler_config(r, c);
  r.ignore({"tensor_format"});  // diffusers 0.x
  r.finish();
  try {
    c.validate();
  } catch (const Error& e) {
    fail(origin, ": ", cls, " key ", e.what());
  }
  return c;
}

inline ScoreSdeVeConfig read_score_sde_ve_config(const std::filesystem::path& file) {
  return score_sde_ve_config_from_json(parse_python_json(read_text_file(file), file.string()), file.string());
}

inline nlohmann::json score_sde_ve_config_to_json(const ScoreSdeVeConfig& config) {
  using namespace scheduler_json_detail;
  json j = json::object();
  j["_class_name"] = std::string(ScoreSdeVeKeys::class_name);
  auto copy = config;
  KeyWriter w(j);
  ScoreSdeVeKeys::scheduler_config(w, copy);
  return j;
}

inline void write_score_sde_ve_config(const std::filesystem::path& file, const ScoreSdeVeConfig& config) {
  write_text_file(file, score_sde_ve_config_to_json(config).dump(2) + "\n");
}

}  // namespace ddpm::io
