#pragma once
// diffusers model folders: config.json + diffusion_pytorch_model.safetensors.
//
//   auto unet = io::load_unet2d<float, backend::Cpu>("google-ddpm-cifar10-32/");
//   io::load_unet2d_weights(unet, "other/diffusion_pytorch_model.safetensors");
//   io::save_unet2d(unet, "out/");   // diffusers' UNet2DModel.from_pretrained("out/") reads it
//
// A pipeline folder (model_index.json, unet/config.json) is accepted: the
// loader looks in its unet/ subfolder. Loading verifies every tensor before
// copying any (io/state_dict.hpp): missing, unexpected and wrongly shaped
// tensors come in ONE ddpm::Error and a failed load leaves the model as it
// was. diffusers' legacy attention names (query/key/value/proj_attn) are
// mapped to to_q/to_k/to_v/to_out.0; F16/BF16/F64 weights are converted to T.
// Saving writes the weights, then config.json, each atomically (temporary
// file + rename): an interrupted save never leaves a half-written file.
#include <filesystem>
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/nn/unet2d.hpp"

namespace ddpm::io {

inline constexpr const char* kDiffusersConfigFile = "config.json";
inline constexpr const char* kDiffusersWeightsFile = "diffusion_pytorch_model.safetensors";

struct DiffusersLoadOptions {
  // diffusers' `variant`: "fp16" reads diffusion_pytorch_model.fp16.safetensors.
  std::string variant;
  nn::Numerics numerics = nn::Numerics::Diffusers;
  StateDictLoadOptions state_dict;
};

// The folder holding config.json: `dir` itself, or its unet/ subfolder (pipeline folders).
inline std::filesystem::path diffusers_model_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  require(fs::is_directory(dir), dir.string(), ": not a folder (expected a diffusers model folder with ",
          kDiffusersConfigFile, " and ", kDiffusersWeightsFile, ")");
  if (fs::exists(dir / kDiffusersConfigFile)) return dir;
  if (fs::exists(dir / "unet" / kDiffusersConfigFile)) return dir / "unet";
  fail(dir.string(), ": no ", kDiffusersConfigFile, " (nor unet/", kDiffusersConfigFile, ") in this folder");
}

// The weights file of a model folder, with a clear error for formats this
// library does not read (PyTorch pickles, sharded checkpoints).
inline std::filesystem::path diffusers_weights_file(const std::filesystem::path& model_dir,
                                                    const std::string& variant = "") {
  namespace fs = std::filesystem;
  const std::string stem = "diffusion_pytorch_model" + (variant.empty() ? std::string() : "." + variant);
  const fs::path st = model_dir / (stem + ".safetensors");
  if (fs::exists(st)) return st;
  if (fs::exists(model_dir / (stem + ".safetensors.index.json")))
    fail(model_dir.string(), ": sharded checkpoints (", stem, ".safetensors.index.json) are not supported; ",
         "save the model unsharded (save_pretrained(..., max_shard_size=\"100GB\"))");
  if (fs::exists(model_dir / (stem + ".bin")))
    fail(model_dir.string(), ": only ", stem, ".bin (a PyTorch pickle) is there; this library reads safetensors ",
         "only: convert it with save_pretrained(..., safe_serialization=True)");
  fail(model_dir.string(), ": no ", stem, ".safetensors in this folder");
}

// Loads weights (a .safetensors file, or a model folder) into an existing
// model. All-or-nothing: on error the model is unchanged.
template <Scalar T, backend::Backend B>
void load_unet2d_weights(nn::UNet2D<T, B>& model, const std::filesystem::path& file_or_dir,
                         const DiffusersLoadOptions& opt = {}) {
  const std::filesystem::path file = std::filesystem::is_directory(file_or_dir)
                                         ? diffusers_weights_file(diffusers_model_dir(file_or_dir), opt.variant)
                                         : file_or_dir;
  load_state_dict(model.parameters(), SafeTensors::load(file), opt.state_dict);
}

// Builds the U-Net from config.json and loads its weights.
template <Scalar T, backend::Backend B>
nn::UNet2D<T, B> load_unet2d(const std::filesystem::path& dir, const DiffusersLoadOptions& opt = {}) {
  const auto model_dir = diffusers_model_dir(dir);
  // Check that the weights exist before building (a large model takes a moment).
  const auto weights = diffusers_weights_file(model_dir, opt.variant);
  nn::UNet2D<T, B> model(read_unet2d_config(model_dir / kDiffusersConfigFile), opt.numerics);
  load_state_dict(model.parameters(), SafeTensors::load(weights), opt.state_dict);
  return model;
}

// Writes `dir`/diffusion_pytorch_model.safetensors (dtype T) and
// `dir`/config.json; creates `dir` if needed.
template <Scalar T, backend::Backend B>
void save_unet2d(const nn::UNet2D<T, B>& model, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  require(fs::is_directory(dir), dir.string(), ": cannot create the folder: ", ec.message());
  model.config().validate();
  state_dict_writer(model.parameters()).save(dir / kDiffusersWeightsFile);
  write_unet2d_config(dir / kDiffusersConfigFile, model.config());
}

}  // namespace ddpm::io
