#pragma once
// model_index.json, the table of contents of a diffusers pipeline folder
// (DiffusionPipeline.save_pretrained writes it, from_pretrained reads it):
//
//   {"_class_name": "LDMPipeline", "_diffusers_version": "0.40.0",
//    "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DModel"],
//    "vqvae": ["diffusers", "VQModel"]}
//
//   io::ModelIndex m = io::read_model_index("ldm-celebahq-256/model_index.json");
//   m.class_name;                         // "LDMPipeline"
//   m.components.at("unet")->class_name;  // "UNet2DModel"; the subfolder is unet/
//   io::write_model_index("out/model_index.json", m);   // sorted keys, 2-space indent, atomic
//
// Reading: the file must be a JSON object; "_class_name" a string;
// "_diffusers_version", when present, a string; any other key starting with
// '_' (diffusers' "_name_or_path", ...) is metadata and skipped. As in
// diffusers, a key whose value is a two-element list names a component:
// [library, class] (two strings), or [null, null] (an optional component left
// unset; kept as std::nullopt). Any other key is an argument of the
// pipeline's __init__ (StableDiffusionPipeline's "requires_safety_checker":
// true); arguments must be scalars (true/false, a number, a string, null).
// Anything else is a one-line ddpm::Error naming the file, the key, the value
// and what was expected. Which components and arguments a pipeline takes is
// the loader's business (io/pipeline.hpp), not this reader's.
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ddpm/core/error.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/json.hpp"

namespace ddpm::io {

inline constexpr const char* kModelIndexFile = "model_index.json";

// One component entry: the library that defines the class ("diffusers",
// "transformers", ...) and the class name; the component's files are in the
// subfolder named by its key.
struct PipelineComponent {
  std::string library;
  std::string class_name;
  bool operator==(const PipelineComponent&) const = default;
};

struct ModelIndex {
  std::string class_name;         // "_class_name"
  std::string diffusers_version;  // "_diffusers_version"; empty: absent
  // Component name -> [library, class]; std::nullopt for [null, null].
  std::map<std::string, std::optional<PipelineComponent>> components;
  // Argument name -> scalar value (never an array or object).
  std::map<std::string, nlohmann::json> arguments;
  bool operator==(const ModelIndex&) const = default;
};

// A parsed model_index.json object; `origin` (the file name) prefixes errors.
inline ModelIndex parse_model_index(const nlohmann::json& j, const std::string& origin = kModelIndexFile) {
  require(j.is_object(), origin, ": expected a JSON object (a diffusers model_index.json), got ", describe_json(j));
  ModelIndex m;
  const auto cls = j.find("_class_name");
  require(cls != j.end(), origin, ": key \"_class_name\" is missing: expected the pipeline's class name");
  require(cls->is_string() && !cls->get<std::string>().empty(), origin, ": key \"_class_name\" = ",
          describe_json(*cls), ": expected the pipeline's class name (a non-empty string)");
  m.class_name = cls->get<std::string>();
  if (const auto v = j.find("_diffusers_version"); v != j.end()) {
    require(v->is_string(), origin, ": key \"_diffusers_version\" = ", describe_json(*v),
            ": expected a version string such as \"0.40.0\"");
    m.diffusers_version = v->get<std::string>();
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key.starts_with("_")) continue;
    const nlohmann::json& v = it.value();
    if (!v.is_structured()) {
      m.arguments.emplace(key, v);
      continue;
    }
    const bool pair = v.is_array() && v.size() == 2;
    if (pair && v[0].is_null() && v[1].is_null()) {
      m.components.emplace(key, std::nullopt);
      continue;
    }
    require(pair && v[0].is_string() && v[1].is_string() && !v[0].get<std::string>().empty() &&
                !v[1].get<std::string>().empty(),
            origin, ": key ", describe_json(key), " = ", describe_json(v),
            ": expected a component [library, class] such as [\"diffusers\", \"UNet2DModel\"], [null, null] "
            "or a scalar pipeline argument");
    m.components.emplace(key, PipelineComponent{v[0].get<std::string>(), v[1].get<std::string>()});
  }
  return m;
}

inline ModelIndex read_model_index(const std::filesystem::path& file) {
  return parse_model_index(parse_python_json(read_text_file(file), file.string()), file.string());
}

inline nlohmann::json model_index_to_json(const ModelIndex& m) {
  nlohmann::json j = nlohmann::json::object();  // nlohmann's object keeps its keys sorted
  j["_class_name"] = m.class_name;
  if (!m.diffusers_version.empty()) j["_diffusers_version"] = m.diffusers_version;
  for (const auto& [name, v] : m.arguments) j[name] = v;
  for (const auto& [name, c] : m.components)
    j[name] = c ? nlohmann::json::array({c->library, c->class_name}) : nlohmann::json::array({nullptr, nullptr});
  return j;
}

// The text diffusers' to_json_string writes: keys sorted, 2-space indent, newline.
inline std::string dump_model_index(const ModelIndex& m) { return model_index_to_json(m).dump(2) + "\n"; }

// Writes `file` atomically (temporary + rename).
inline void write_model_index(const std::filesystem::path& file, const ModelIndex& m) {
  write_text_file(file, dump_model_index(m));
}

}  // namespace ddpm::io
