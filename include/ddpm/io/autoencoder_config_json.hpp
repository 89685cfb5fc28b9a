#pragma once
// config.json <-> AutoencoderKLConfig / VQModelConfig, in diffusers' format.
//
//   auto c = io::read_autoencoder_kl_config("vae/config.json");
//   io::write_autoencoder_kl_config("out/config.json", c);   // atomic; diffusers reads it back
//   std::string cls = io::read_model_class("vae/config.json"); // "AutoencoderKL", "VQModel", ...
//
// Keys missing from the file take the class's defaults (old Hub configs, such
// as stabilityai/sd-vae-ft-mse's, lack newer keys). Keys starting with '_' are
// metadata ("_class_name", when present, must name the class read). A key the
// class does not have, a value of the wrong JSON type and a value the library
// does not support are each a one-line ddpm::Error naming the file, the key
// and the value.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/core/error.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/nn/autoencoder_config.hpp"

namespace ddpm::io {

namespace autoencoder_json_detail {

using json = nlohmann::json;
using unet_json_detail::KeyReader;

inline const std::vector<std::string>& layout_keys() {
  static const std::vector<std::string> keys{
      "in_channels",  "out_channels",   "down_block_types", "up_block_types", "block_out_channels",
      "layers_per_block", "act_fn",     "latent_channels",  "norm_num_groups", "sample_size",
      "scaling_factor", "force_upcast", "mid_block_add_attention"};
  return keys;
}
inline const std::vector<std::string>& kl_keys() {
  static const std::vector<std::string> keys{"shift_factor", "latents_mean", "latents_std", "use_quant_conv",
                                             "use_post_quant_conv"};
  return keys;
}
inline const std::vector<std::string>& vq_keys() {
  static const std::vector<std::string> keys{"num_vq_embeddings", "vq_embed_dim", "norm_type", "lookup_from_codebook"};
  return keys;
}

inline void check_object(const json& j, const std::string& origin, const std::string& cls,
                         const std::vector<std::string>& extra) {
  require(j.is_object(), origin, ": a ", cls, " config must be a JSON object, got ", describe_json(j));
  if (auto it = j.find("_class_name"); it != j.end())
    require(it->is_string() && it->get<std::string>() == cls, origin, ": key \"_class_name\" = ", describe_json(*it),
            ": expected \"", cls, "\"");
  for (auto& [k, v] : j.items()) {
    if (!k.empty() && k[0] == '_') continue;
    const bool known = std::find(layout_keys().begin(), layout_keys().end(), k) != layout_keys().end() ||
                       std::find(extra.begin(), extra.end(), k) != extra.end();
    require(known, origin, ": key \"", k, "\" = ", describe_json(v), ": not a key of diffusers' ", cls);
  }
}

inline void read_layout(const KeyReader& r, nn::AutoencoderLayout& c) {
  r.get("in_channels", c.in_channels);
  r.get("out_channels", c.out_channels);
  r.get("down_block_types", c.down_block_types);
  r.get("up_block_types", c.up_block_types);
  r.get("block_out_channels", c.block_out_channels);
  r.get("layers_per_block", c.layers_per_block);
  r.get("act_fn", c.act_fn);
  r.get("latent_channels", c.latent_channels);
  r.get("norm_num_groups", c.norm_num_groups);
  if (auto* v = r.find("sample_size")) {
    if (v->is_null()) {
      c.sample_size.clear();
    } else if (v->is_array()) {
      r.get("sample_size", c.sample_size);
      if (c.sample_size.size() != 2) r.bad("sample_size", *v, "null, an integer or [height, width]");
    } else {
      c.sample_size = {r.as_int("sample_size", *v)};
    }
  }
  r.get("scaling_factor", c.scaling_factor);
  r.get("force_upcast", c.force_upcast);
  r.get("mid_block_add_attention", c.mid_block_add_attention);
}

inline void get_numbers(const KeyReader& r, const std::string& key, std::optional<std::vector<double>>& out) {
  const json* v = r.find(key);
  if (!v) return;
  if (v->is_null()) {
    out.reset();
    return;
  }
  if (!v->is_array()) r.bad(key, *v, "null or a list of numbers");
  std::vector<double> xs;
  for (auto& e : *v) {
    if (!e.is_number()) r.bad(key, *v, "null or a list of numbers");
    xs.push_back(e.get<double>());
  }
  out = std::move(xs);
}

template <class C>
C validated(C c, const std::string& origin) {
  try {
    c.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return c;
}

inline void write_layout(json& j, const nn::AutoencoderLayout& c) {
  j["_diffusers_version"] = "0.40.0";
  j["in_channels"] = c.in_channels;
  j["out_channels"] = c.out_channels;
  j["down_block_types"] = c.down_block_types;
  j["up_block_types"] = c.up_block_types;
  j["block_out_channels"] = c.block_out_channels;
  j["layers_per_block"] = c.layers_per_block;
  j["act_fn"] = c.act_fn;
  j["latent_channels"] = c.latent_channels;
  j["norm_num_groups"] = c.norm_num_groups;
  j["sample_size"] = c.sample_size.empty()       ? json(nullptr)
                     : c.sample_size.size() == 1 ? json(c.sample_size[0])
                                                 : json(c.sample_size);
  j["scaling_factor"] = c.scaling_factor;
  j["force_upcast"] = c.force_upcast;
  j["mid_block_add_attention"] = c.mid_block_add_attention;
}

inline json parse_file(const std::filesystem::path& path) {
  return parse_python_json(read_text_file(path), path.string());
}

}  // namespace autoencoder_json_detail

// The "_class_name" of a diffusers config object ("" when absent).
inline std::string model_class_name(const nlohmann::json& j, const std::string& origin = "config.json") {
  if (!j.is_object()) fail(origin, ": expected a JSON object, got ", describe_json(j));
  auto it = j.find("_class_name");
  if (it == j.end()) return "";
  require(it->is_string(), origin, ": key \"_class_name\" = ", describe_json(*it), ": expected a string");
  return it->get<std::string>();
}
inline std::string read_model_class(const std::filesystem::path& path) {
  return model_class_name(autoencoder_json_detail::parse_file(path), path.string());
}

inline nn::AutoencoderKLConfig parse_autoencoder_kl_config(const nlohmann::json& j,
                                                           const std::string& origin = "config.json") {
  using namespace autoencoder_json_detail;
  check_object(j, origin, "AutoencoderKL", kl_keys());
  const KeyReader r(j, origin);
  nn::AutoencoderKLConfig c;
  read_layout(r, c);
  if (auto* v = r.find("shift_factor")) {
    if (v->is_null()) c.shift_factor.reset();
    else if (v->is_number()) c.shift_factor = v->get<double>();
    else r.bad("shift_factor", *v, "null or a number");
  }
  get_numbers(r, "latents_mean", c.latents_mean);
  get_numbers(r, "latents_std", c.latents_std);
  r.get("use_quant_conv", c.use_quant_conv);
  r.get("use_post_quant_conv", c.use_post_quant_conv);
  return validated(std::move(c), origin);
}

inline nn::VQModelConfig parse_vq_model_config(const nlohmann::json& j, const std::string& origin = "config.json") {
  using namespace autoencoder_json_detail;
  check_object(j, origin, "VQModel", vq_keys());
  const KeyReader r(j, origin);
  nn::VQModelConfig c;
  read_layout(r, c);
  r.get("num_vq_embeddings", c.num_vq_embeddings);
  r.get("vq_embed_dim", c.vq_embed_dim);
  r.get("norm_type", c.norm_type);
  r.get("lookup_from_codebook", c.lookup_from_codebook);
  return validated(std::move(c), origin);
}

inline nn::AutoencoderKLConfig read_autoencoder_kl_config(const std::filesystem::path& path) {
  return parse_autoencoder_kl_config(autoencoder_json_detail::parse_file(path), path.string());
}
inline nn::VQModelConfig read_vq_model_config(const std::filesystem::path& path) {
  return parse_vq_model_config(autoencoder_json_detail::parse_file(path), path.string());
}

// The configs as diffusers serialises them (sorted keys, every key present).
inline nlohmann::json autoencoder_kl_config_to_json(const nn::AutoencoderKLConfig& c) {
  using namespace autoencoder_json_detail;
  json j = json::object();
  j["_class_name"] = "AutoencoderKL";
  write_layout(j, c);
  j["shift_factor"] = c.shift_factor ? json(*c.shift_factor) : json(nullptr);
  j["latents_mean"] = c.latents_mean ? json(*c.latents_mean) : json(nullptr);
  j["latents_std"] = c.latents_std ? json(*c.latents_std) : json(nullptr);
  j["use_quant_conv"] = c.use_quant_conv;
  j["use_post_quant_conv"] = c.use_post_quant_conv;
  return j;
}
inline nlohmann::json vq_model_config_to_json(const nn::VQModelConfig& c) {
  using namespace autoencoder_json_detail;
  json j = json::object();
  j["_class_name"] = "VQModel";
  write_layout(j, c);
  j["num_vq_embeddings"] = c.num_vq_embeddings;
  j["vq_embed_dim"] = c.vq_embed_dim ? json(*c.vq_embed_dim) : json(nullptr);
  j["norm_type"] = c.norm_type;
  j["lookup_from_codebook"] = c.lookup_from_codebook;
  return j;
}

// Write config.json atomically (validated first: nothing invalid is written).
inline void write_autoencoder_kl_config(const std::filesystem::path& path, const nn::AutoencoderKLConfig& c) {
  c.validate();
  write_text_file(path, autoencoder_kl_config_to_json(c).dump(2) + "\n");
}
inline void write_vq_model_config(const std::filesystem::path& path, const nn::VQModelConfig& c) {
  c.validate();
  write_text_file(path, vq_model_config_to_json(c).dump(2) + "\n");
}

}  // namespace ddpm::io
