#pragma once
// diffusers autoencoder folders (config.json + diffusion_pytorch_model.safetensors)
// for AutoencoderKL and VQModel.
//
//   auto vae = io::load_autoencoder_kl<float, backend::Cpu>("sd-vae-ft-mse/");
//   auto vq = io::load_vq_model<float, backend::Cpu>("ldm-celebahq-256/");   // its vqvae/ subfolder
//   io::save_autoencoder_kl(vae, "out/");   // AutoencoderKL.from_pretrained("out/") reads it
//
// A pipeline folder is accepted: the loader looks in its vae/ (AutoencoderKL)
// or vqvae/ (VQModel) subfolder. The config's "_class_name" must name the
// class loaded. Loading verifies every tensor before copying any (all or
// nothing, io/state_dict.hpp) and maps diffusers' legacy attention names
// (query/key/value/proj_attn, as in the sd-vae-ft-mse weights) to
// to_q/to_k/to_v/to_out.0. Saving writes the weights, then config.json, each
// atomically.
#include <filesystem>
#include <string>
#include <type_traits>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/io/autoencoder_config_json.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
#include "ddpm/nn/vq_model.hpp"

namespace ddpm::io {

namespace autoencoder_io_detail {

// The folder holding config.json: `dir`, or its `sub`/ folder (pipeline folders).
inline std::filesystem::path model_dir(const std::filesystem::path& dir, const char* sub) {
  namespace fs = std::filesystem;
  require(fs::is_directory(dir), dir.string(), ": not a folder (expected a diffusers model folder with ",
          kDiffusersConfigFile, " and ", kDiffusersWeightsFile, ")");
  if (fs::exists(dir / kDiffusersConfigFile)) return dir;
  if (fs::exists(dir / sub / kDiffusersConfigFile)) return dir / sub;
  fail(dir.string(), ": no ", kDiffusersConfigFile, " (nor ", sub, "/", kDiffusersConfigFile, ") in this folder");
}

inline void check_class(const std::filesystem::path& config, const std::string& cls) {
  const std::string found = read_model_class(config);
  require(found.empty() || found == cls, config.string(), ": key \"_class_name\" = \"", found, "\": expected \"",
          cls, "\"");
}

template <class Model>
void save(const Model& model, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  require(fs::is_directory(dir), dir.string(), ": cannot create the folder: ", ec.message());
  model.config().validate();
  state_dict_writer(model.parameters()).save(dir / kDiffusersWeightsFile);
}

}  // namespace autoencoder_io_detail

// Loads weights (a .safetensors file, or a model folder) into an existing
// model. All-or-nothing: on error the model is unchanged.
template <class Model>
void load_autoencoder_weights(Model& model, const std::filesystem::path& file_or_dir,
                              const DiffusersLoadOptions& opt = {}) {
  namespace fs = std::filesystem;
  const char* sub = std::is_same_v<typename Model::config_type, nn::VQModelConfig> ? "vqvae" : "vae";
  const fs::path file = fs::is_directory(file_or_dir)
                            ? diffusers_weights_file(autoencoder_io_detail::model_dir(file_or_dir, sub), opt.variant)
                            : file_or_dir;
  load_state_dict(model.parameters(), SafeTensors::load(file), opt.state_dict);
}

template <Scalar T, backend::Backend B>
nn::AutoencoderKL<T, B> load_autoencoder_kl(const std::filesystem::path& dir, const DiffusersLoadOptions& opt = {}) {
  const auto md = autoencoder_io_detail::model_dir(dir, "vae");
  const auto weights = diffusers_weights_file(md, opt.variant);
  autoencoder_io_detail::check_class(md / kDiffusersConfigFile, "AutoencoderKL");
  nn::AutoencoderKL<T, B> model(read_autoencoder_kl_config(md / kDiffusersConfigFile), opt.numerics);
  load_state_dict(model.parameters(), SafeTensors::load(weights), opt.state_dict);
  return model;
}

template <Scalar T, backend::Backend B>
nn::VQModel<T, B> load_vq_model(const std::filesystem::path& dir, const DiffusersLoadOptions& opt = {}) {
  const auto md = autoencoder_io_detail::model_dir(dir, "vqvae");
  const auto weights = diffusers_weights_file(md, opt.variant);
  autoencoder_io_detail::check_class(md / kDiffusersConfigFile, "VQModel");
  nn::VQModel<T, B> model(read_vq_model_config(md / kDiffusersConfigFile), opt.numerics);
  load_state_dict(model.parameters(), SafeTensors::load(weights), opt.state_dict);
  return model;
}

// Writes `dir`/diffusion_pytorch_model.safetensors (dtype T) and `dir`/config.json.
template <Scalar T, backend::Backend B>
void save_autoencoder_kl(const nn::AutoencoderKL<T, B>& model, const std::filesystem::path& dir) {
  autoencoder_io_detail::save(model, dir);
  write_autoencoder_kl_config(dir / kDiffusersConfigFile, model.config());
}
template <Scalar T, backend::Backend B>
void save_vq_model(const nn::VQModel<T, B>& model, const std::filesystem::path& dir) {
  autoencoder_io_detail::save(model, dir);
  write_vq_model_config(dir / kDiffusersConfigFile, model.config());
}

}  // namespace ddpm::io
