#pragma once
// MLPDenoiser folders: config.json (a small JSON config) + model.safetensors.
//
//   io::save_mlp_denoiser(model, "ckpt/");                        // atomic writes
//   auto m = io::load_mlp_denoiser<double, backend::Reference>("ckpt/");
//
// Unknown keys, wrong JSON types and unsupported values are ddpm::Errors
// naming the file and the key; weights load all-or-nothing (io/state_dict.hpp).
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "ddpm/io/file.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/nn/mlp_denoiser.hpp"

namespace ddpm::io {

inline constexpr const char* kMLPDenoiserWeightsFile = "model.safetensors";

inline nlohmann::json mlp_denoiser_config_to_json(const nn::MLPDenoiserConfig& c) {
  return {{"_class_name", "MLPDenoiser"},
          {"data_dim", c.data_dim},
          {"cond_dim", c.cond_dim},
          {"cond_mode", c.cond_mode == nn::CondMode::Add ? "add" : "concat"},
          {"hidden", c.hidden},
          {"depth", c.depth},
          {"time_embed_dim", c.time_embed_dim},
          {"flip_sin_to_cos", c.flip_sin_to_cos},
          {"freq_shift", c.freq_shift}};
}

inline nn::MLPDenoiserConfig parse_mlp_denoiser_config(const nlohmann::json& j, const std::string& origin) {
  require(j.is_object(), origin, ": an MLPDenoiser config must be a JSON object");
  if (auto it = j.find("_class_name"); it != j.end())
    require(*it == "MLPDenoiser", origin, ": key \"_class_name\" = ", describe_json(*it), ": expected \"MLPDenoiser\"");
  static const char* known[] = {"data_dim", "cond_dim", "cond_mode", "hidden", "depth", "time_embed_dim",
                                "flip_sin_to_cos", "freq_shift"};
  for (auto& [k, v] : j.items())
    require(k.empty() || k[0] == '_' || std::find(std::begin(known), std::end(known), k) != std::end(known), origin,
            ": unknown key \"", k, "\"");
  const unet_json_detail::KeyReader r(j, origin);
  nn::MLPDenoiserConfig c;
  r.get("data_dim", c.data_dim);
  r.get("cond_dim", c.cond_dim);
  std::string mode = "concat";
  r.get("cond_mode", mode);
  require(mode == "concat" || mode == "add", origin, ": key \"cond_mode\" = \"", mode,
          "\" is not supported (supported: \"concat\", \"add\")");
  c.cond_mode = mode == "add" ? nn::CondMode::Add : nn::CondMode::Concat;
  r.get("hidden", c.hidden);
  r.get("depth", c.depth);
  r.get("time_embed_dim", c.time_embed_dim);
  r.get("flip_sin_to_cos", c.flip_sin_to_cos);
  r.get("freq_shift", c.freq_shift);
  try {
    c.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return c;
}

template <Scalar T, backend::Backend B>
void save_mlp_denoiser(const nn::MLPDenoiser<T, B>& model, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  require(std::filesystem::is_directory(dir), dir.string(), ": cannot create the folder: ", ec.message());
  state_dict_writer(model.parameters()).save(dir / kMLPDenoiserWeightsFile);
  write_text_file(dir / "config.json", mlp_denoiser_config_to_json(model.config()).dump(2) + "\n");
}

template <Scalar T, backend::Backend B>
nn::MLPDenoiser<T, B> load_mlp_denoiser(const std::filesystem::path& dir, const StateDictLoadOptions& opt = {}) {
  const auto cfg_path = dir / "config.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(cfg_path));
  } catch (const nlohmann::json::exception& e) {
    fail(cfg_path.string(), ": invalid JSON: ", e.what());
  }
  nn::MLPDenoiser<T, B> model(parse_mlp_denoiser_config(j, cfg_path.string()));
  load_state_dict(model.parameters(), SafeTensors::load(dir / kMLPDenoiserWeightsFile), opt);
  return model;
}

}  // namespace ddpm::io
