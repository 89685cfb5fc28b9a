#pragma once
// config.json <-> UNet2DConfig, in diffusers' format.
//
//   UNet2DConfig c = io::read_unet2d_config("model/config.json");
//   io::write_unet2d_config("out/config.json", c);   // atomic; diffusers reads it back
//
// Keys missing from the file take UNet2DModel's defaults (old Hub configs lack
// newer keys). Keys starting with '_' are metadata. A key UNet2DModel does not
// know is ignored, as diffusers ignores it, and reported through `ignored`.
// A value of the wrong JSON type, or one the library does not support
// (time_embedding_type "fourier", other block types, class_embed_type
// "timestep", act_fn other than silu, ...), is a ddpm::Error naming the file,
// the key, the value and what is supported: never a silent difference.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/core/error.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/nn/unet2d_config.hpp"

namespace ddpm::io {

namespace unet_json_detail {

using json = nlohmann::json;

// Reads one key of the object with the type check; `origin` names the file.
class KeyReader {
 public:
  KeyReader(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  [[noreturn]] void bad(const std::string& key, const json& v, const std::string& expected) const {
    fail(origin_, ": key \"", key, "\" = ", describe_json(v), ": expected ", expected);
  }

  // The value, or nullptr when absent (the default applies).
  const json* find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }

  static bool integral(const json& v) {
    if (v.is_number_integer()) return true;
    return v.is_number_float() && std::isfinite(v.get<double>()) && std::floor(v.get<double>()) == v.get<double>() &&
           std::abs(v.get<double>()) < 2147483647.0;
  }

  int as_int(const std::string& key, const json& v) const {
    if (v.is_boolean() || !integral(v)) bad(key, v, "an integer");
    if (v.is_number_integer()) {
      const auto x = v.get<long long>();
      if (x < -2147483647LL || x > 2147483647LL) bad(key, v, "an integer in the int range");
      return static_cast<int>(x);
    }
    return static_cast<int>(v.get<double>());
  }

  void get(const std::string& key, int& out) const {
    if (auto* v = find(key)) out = as_int(key, *v);
  }
  void get(const std::string& key, std::optional<int>& out) const {
    if (auto* v = find(key)) out = v->is_null() ? std::nullopt : std::optional<int>(as_int(key, *v));
  }
  void get(const std::string& key, double& out) const {
    if (auto* v = find(key)) {
      if (!v->is_number()) bad(key, *v, "a number");
      out = v->get<double>();
    }
  }
  void get(const std::string& key, bool& out) const {
    if (auto* v = find(key)) {
      if (!v->is_boolean()) bad(key, *v, "true or false");
      out = v->get<bool>();
    }
  }
  void get(const std::string& key, std::string& out) const {
    if (auto* v = find(key)) {
      if (!v->is_string()) bad(key, *v, "a string");
      out = v->get<std::string>();
    }
  }
  void get(const std::string& key, std::optional<std::string>& out) const {
    if (auto* v = find(key)) {
      if (!v->is_null() && !v->is_string()) bad(key, *v, "a string or null");
      out = v->is_null() ? std::nullopt : std::optional<std::string>(v->get<std::string>());
    }
  }
  void get(const std::string& key, std::vector<std::string>& out) const {
    if (auto* v = find(key)) {
      if (!v->is_array()) bad(key, *v, "a list of strings");
      out.clear();
      for (auto& e : *v) {
        if (!e.is_string()) bad(key, *v, "a list of strings");
        out.push_back(e.get<std::string>());
      }
    }
  }
  void get(const std::string& key, std::vector<int>& out) const {
    if (auto* v = find(key)) {
      if (!v->is_array()) bad(key, *v, "a list of integers");
      out.clear();
      for (auto& e : *v) {
        if (e.is_boolean() || !integral(e)) bad(key, *v, "a list of integers");
        out.push_back(as_int(key, e));
      }
    }
  }

 private:
  const json& j_;
  std::string origin_;
};

// Every key of UNet2DModel.__init__ (diffusers 0.40), in its order.
inline const std::vector<std::string>& unet2d_keys() {
  static const std::vector<std::string> keys{
      "sample_size",         "in_channels",        "out_channels",         "center_input_sample",
      "time_embedding_type", "time_embedding_dim", "freq_shift",           "flip_sin_to_cos",
      "down_block_types",    "mid_block_type",     "up_block_types",       "block_out_channels",
      "layers_per_block",    "mid_block_scale_factor", "downsample_padding", "downsample_type",
      "upsample_type",       "dropout",            "act_fn",               "attention_head_dim",
      "norm_num_groups",     "attn_norm_num_groups", "norm_eps",           "resnet_time_scale_shift",
      "add_attention",       "class_embed_type",   "num_class_embeds",     "num_train_timesteps"};
  return keys;
}

// Ours, not diffusers': the channels of an image condition concatenated to
// the input (nn::UNet2DConfig::condition_channels). Written only when > 0;
// diffusers' UNet2DModel.from_config ignores it (with a warning), and the
// folder loads there as an ordinary UNet2DModel with in_channels = noise +
// condition channels, as the LDM super-resolution UNets.
inline constexpr const char* condition_channels_key = "ddpm_condition_channels";

}  // namespace unet_json_detail

// Parses a UNet2DModel config object; `origin` (a file name) prefixes errors.
// Validates the result (UNet2DConfig::validate) and re-throws its error with
// the origin in front.
inline nn::UNet2DConfig parse_unet2d_config(const nlohmann::json& j, const std::string& origin = "config.json",
                                            std::vector<std::string>* ignored = nullptr) {
  using namespace unet_json_detail;
  require(j.is_object(), origin, ": a UNet2DModel config must be a JSON object, got ", describe_json(j));
  if (auto it = j.find("_class_name"); it != j.end())
    require(it->is_string() && it->get<std::string>() == "UNet2DModel", origin, ": key \"_class_name\" = ",
            describe_json(*it), ": expected \"UNet2DModel\" (the only model class this reader supports)");
  const KeyReader r(j, origin);
  nn::UNet2DConfig c;
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
  r.get("in_channels", c.in_channels);
  r.get("out_channels", c.out_channels);
  r.get("center_input_sample", c.center_input_sample);
  r.get("time_embedding_type", c.time_embedding_type);
  r.get("time_embedding_dim", c.time_embedding_dim);
  r.get("freq_shift", c.freq_shift);
  r.get("flip_sin_to_cos", c.flip_sin_to_cos);
  r.get("down_block_types", c.down_block_types);
  r.get("mid_block_type", c.mid_block_type);
  r.get("up_block_types", c.up_block_types);
  r.get("block_out_channels", c.block_out_channels);
  r.get("layers_per_block", c.layers_per_block);
  r.get("mid_block_scale_factor", c.mid_block_scale_factor);
  r.get("downsample_padding", c.downsample_padding);
  r.get("downsample_type", c.downsample_type);
  r.get("upsample_type", c.upsample_type);
  r.get("dropout", c.dropout);
  r.get("act_fn", c.act_fn);
  r.get("attention_head_dim", c.attention_head_dim);
  r.get("norm_num_groups", c.norm_num_groups);
  r.get("attn_norm_num_groups", c.attn_norm_num_groups);
  r.get("norm_eps", c.norm_eps);
  r.get("resnet_time_scale_shift", c.resnet_time_scale_shift);
  r.get("add_attention", c.add_attention);
  r.get("class_embed_type", c.class_embed_type);
  r.get("num_class_embeds", c.num_class_embeds);
  r.get("num_train_timesteps", c.num_train_timesteps);
  r.get(condition_channels_key, c.condition_channels);
  if (ignored) {
    ignored->clear();
    for (auto& [k, v] : j.items())
      if (!k.empty() && k[0] != '_' && k != condition_channels_key && std::find(unet2d_keys().begin(), unet2d_keys().end(), k) == unet2d_keys().end())
        ignored->push_back(k);
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return c;
}

inline nn::UNet2DConfig read_unet2d_config(const std::filesystem::path& path,
                                           std::vector<std::string>* ignored = nullptr) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path.string(), ": invalid JSON: ", e.what());
  }
  return parse_unet2d_config(j, path.string(), ignored);
}

// The config as diffusers serialises it (sorted keys, every key present).
inline nlohmann::json unet2d_config_to_json(const nn::UNet2DConfig& c) {
  using json = nlohmann::json;
  const auto opt = [](const auto& o) -> json { return o ? json(*o) : json(nullptr); };
  json j = json::object();
  j["_class_name"] = "UNet2DModel";
  j["_diffusers_version"] = "0.40.0";
  j["sample_size"] = c.sample_size.empty()       ? json(nullptr)
                     : c.sample_size.size() == 1 ? json(c.sample_size[0])
                                                 : json(c.sample_size);
  j["in_channels"] = c.in_channels;
  j["out_channels"] = c.out_channels;
  j["center_input_sample"] = c.center_input_sample;
  j["time_embedding_type"] = c.time_embedding_type;
  j["time_embedding_dim"] = opt(c.time_embedding_dim);
  j["freq_shift"] = c.freq_shift;
  j["flip_sin_to_cos"] = c.flip_sin_to_cos;
  j["down_block_types"] = c.down_block_types;
  j["mid_block_type"] = opt(c.mid_block_type);
  j["up_block_types"] = c.up_block_types;
  j["block_out_channels"] = c.block_out_channels;
  j["layers_per_block"] = c.layers_per_block;
  // Integral scale factors are written as integers, as Python would keep them.
  if (std::floor(c.mid_block_scale_factor) == c.mid_block_scale_factor && std::abs(c.mid_block_scale_factor) < 1e9)
    j["mid_block_scale_factor"] = static_cast<long long>(c.mid_block_scale_factor);
  else
    j["mid_block_scale_factor"] = c.mid_block_scale_factor;
  j["downsample_padding"] = c.downsample_padding;
  j["downsample_type"] = c.downsample_type;
  j["upsample_type"] = c.upsample_type;
  j["dropout"] = c.dropout;
  j["act_fn"] = c.act_fn;
  j["attention_head_dim"] = opt(c.attention_head_dim);
  j["norm_num_groups"] = c.norm_num_groups;
  j["attn_norm_num_groups"] = opt(c.attn_norm_num_groups);
  j["norm_eps"] = c.norm_eps;
  j["resnet_time_scale_shift"] = c.resnet_time_scale_shift;
  j["add_attention"] = c.add_attention;
  j["class_embed_type"] = opt(c.class_embed_type);
  j["num_class_embeds"] = opt(c.num_class_embeds);
  j["num_train_timesteps"] = opt(c.num_train_timesteps);
  if (c.condition_channels > 0) j[unet_json_detail::condition_channels_key] = c.condition_channels;
  return j;  // nlohmann::json keeps keys sorted, as diffusers' to_json_string does
}

// Writes config.json atomically (validates first, so nothing invalid is written).
inline void write_unet2d_config(const std::filesystem::path& path, const nn::UNet2DConfig& c) {
  c.validate();
  write_text_file(path, unet2d_config_to_json(c).dump(2) + "\n");
}

}  // namespace ddpm::io
