#pragma once
// diffusers pipeline folders of the latent pipelines (pipelines/latent_pipeline.hpp):
//
//   ldm-folder/
//     model_index.json              {"_class_name": "LDMPipeline", "unet": ["diffusers", "UNet2DModel"], ...}
//     unet/config.json, unet/diffusion_pytorch_model.safetensors
//     vqvae/ (VQModel) or vae/ (AutoencoderKL): config.json, diffusion_pytorch_model.safetensors
//     scheduler/scheduler_config.json
//
//   auto p = io::load_latent_pipeline<float, backend::Cpu>("ldm-folder/");
//   io::save_latent_pipeline(p, "out/");   // LDMPipeline.from_pretrained("out/") reads it
//
// The components each class needs (diffusers' __init__ names):
//   LDMPipeline, LDMSuperResolutionPipeline: vqvae VQModel, unet UNet2DModel, scheduler
//   LatentKLPipeline:                        vae AutoencoderKL, unet UNet2DModel, scheduler
// with the scheduler any class the sampler registry implements. Loading
// checks, before any weight is read: model_index.json (the class, every
// component ["diffusers", class] as required, no unknown component), every
// component folder present, each config's class the one model_index.json
// names, and that the latent widths fit (UNet out_channels = the decoder's
// latent channels, ...). Each problem is a one-line ddpm::Error naming the
// file, the key and what was expected; a failed load returns nothing.
//
// Saving writes the whole folder under a temporary name beside `dir`, then
// renames it into place (a previous folder there is replaced only once the
// new one is complete).
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/io/autoencoder.hpp"
#include "ddpm/io/autoencoder_config_json.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/model_index.hpp"
#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/pipelines/latent_pipeline.hpp"

namespace ddpm::io {

inline constexpr const char* kSchedulerConfigFile = "scheduler_config.json";

// One component a pipeline class needs: its key (= subfolder) and class
// (empty for the scheduler: any registered scheduler class).
struct PipelineComponentSpec {
  std::string_view name;
  std::string_view class_name;
};

inline std::vector<PipelineComponentSpec> latent_pipeline_components(LatentPipelineKind kind) {
  const std::string_view ae = kind == LatentPipelineKind::latent_kl ? "vae" : "vqvae";
  const std::string_view ae_class = kind == LatentPipelineKind::latent_kl ? "AutoencoderKL" : "VQModel";
  return {{"scheduler", ""}, {"unet", "UNet2DModel"}, {ae, ae_class}};
}

namespace pipeline_io_detail {

inline std::string component_text(std::string_view class_name) {
  return class_name.empty() ? std::string("[\"diffusers\", <a scheduler class: ") +
                                  scheduler_json_detail::class_names_text() + ">]"
                            : "[\"diffusers\", \"" + std::string(class_name) + "\"]";
}

// ["library", "class"] as in the file (escaped, each name at most 80 characters).
inline std::string component_json(const std::optional<PipelineComponent>& c) {
  return c ? "[" + describe_json(c->library) + ", " + describe_json(c->class_name) + "]" : "[null, null]";
}

inline bool is_registered_scheduler(std::string_view cls) {
  for (std::string_view s : Samplers::class_names)
    if (s == cls) return true;
  return false;
}

// A name beside `dir` for a temporary or retired folder.
inline std::filesystem::path sibling(const std::filesystem::path& dir, const char* what) {
  std::random_device rd;
  const std::filesystem::path parent = dir.has_parent_path() ? dir.parent_path() : std::filesystem::path(".");
  return parent / ("." + dir.filename().string() + what + std::to_string(rd()));
}

}  // namespace pipeline_io_detail

// Checks a parsed model_index.json (`origin` names it in errors) against the
// latent pipeline classes: the class is one of them, each component it needs
// is ["diffusers", class] as required, no other component is set, and there
// is no __init__ argument (these pipelines take none).
// Returns the pipeline's kind. Reads no file.
inline LatentPipelineKind check_latent_pipeline_index(const ModelIndex& m, const std::string& origin) {
  using namespace pipeline_io_detail;
  const auto kind = latent_pipeline_kind(m.class_name);
  require(kind.has_value(), origin, ": key \"_class_name\" = ", describe_json(m.class_name), ": expected ",
          latent_pipeline_class_names_text());
  const auto specs = latent_pipeline_components(*kind);
  for (const auto& [name, v] : m.arguments) {
    for (const auto& spec : specs)
      require(spec.name != name, origin, ": key ", describe_json(name), " = ", describe_json(v), ": expected ",
              component_text(spec.class_name));
    fail(origin, ": key ", describe_json(name), " = ", describe_json(v), ": not an argument of ", m.class_name,
         " (it takes none)");
  }
  for (const auto& spec : specs) {
    const auto it = m.components.find(std::string(spec.name));
    require(it != m.components.end() && it->second.has_value(), origin, ": key \"", spec.name, "\" ",
            it == m.components.end() ? "is missing" : "= [null, null]", ": ", m.class_name, " needs ",
            component_text(spec.class_name));
    const PipelineComponent& c = *it->second;
    const bool ok = c.library == "diffusers" &&
                    (spec.class_name.empty() ? is_registered_scheduler(c.class_name) : c.class_name == spec.class_name);
    require(ok, origin, ": key \"", spec.name, "\" = ", component_json(c), ": expected ",
            component_text(spec.class_name));
  }
  for (const auto& [name, c] : m.components) {
    if (!c) continue;  // an optional component left unset
    bool known = false;
    for (const auto& spec : specs) known = known || spec.name == name;
    require(known, origin, ": key ", describe_json(name), " = ", component_json(c), ": not a component of ",
            m.class_name, " (expected ", specs[0].name, ", ", specs[1].name, " and ", specs[2].name, ")");
  }
  return *kind;
}

// The parsed and checked model_index.json of a latent pipeline folder, and
// its kind; every component folder must exist.
struct LatentPipelineIndex {
  ModelIndex index;
  LatentPipelineKind kind;
};

inline LatentPipelineIndex read_latent_pipeline_index(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  using namespace pipeline_io_detail;
  require(fs::is_directory(dir), dir.string(), ": not a folder (expected a diffusers pipeline folder with ",
          kModelIndexFile, ")");
  const fs::path file = dir / kModelIndexFile;
  require(fs::exists(file), file.string(), ": file not found (expected a diffusers pipeline folder)");
  ModelIndex m = read_model_index(file);
  const LatentPipelineKind kind = check_latent_pipeline_index(m, file.string());
  for (const auto& spec : latent_pipeline_components(kind)) {
    const fs::path sub = dir / spec.name;
    require(fs::is_directory(sub), sub.string(), ": folder missing (", file.string(), " lists component \"",
            spec.name, "\" = ", component_json(m.components.at(std::string(spec.name))), ")");
  }
  return {std::move(m), kind};
}

// Loads a latent pipeline folder (see above); every model in T on backend B.
template <Scalar T, backend::Backend B>
LatentPipeline<T, B> load_latent_pipeline(const std::filesystem::path& dir, const DiffusersLoadOptions& opt = {}) {
  namespace fs = std::filesystem;
  const LatentPipelineIndex li = read_latent_pipeline_index(dir);
  const bool kl = li.kind == LatentPipelineKind::latent_kl;
  const std::string ae_name = kl ? "vae" : "vqvae";

  // The scheduler: its class must be the one model_index.json names.
  const fs::path sched_file = dir / "scheduler" / kSchedulerConfigFile;
  const SamplerConfig sched = read_scheduler_config(sched_file);
  const std::string& listed = li.index.components.at("scheduler")->class_name;
  require(scheduler_class_name(sched) == listed, sched_file.string(), ": key \"_class_name\" = \"",
          scheduler_class_name(sched), "\": expected \"", listed, "\" (as ", (dir / kModelIndexFile).string(),
          " lists)");

  // The configs, and that the latent widths fit, before any weight is read.
  const fs::path unet_file = dir / "unet" / kDiffusersConfigFile, ae_file = dir / ae_name / kDiffusersConfigFile;
  const nn::UNet2DConfig uc = read_unet2d_config(unet_file);
  index_t latent = 0;
  const char* latent_key = kl ? "latent_channels" : "vq_embed_dim (null: latent_channels)";
  if (kl) {
    autoencoder_io_detail::check_class(ae_file, "AutoencoderKL");
    latent = read_autoencoder_kl_config(ae_file).latent_channels;
  } else {
    autoencoder_io_detail::check_class(ae_file, "VQModel");
    latent = read_vq_model_config(ae_file).embed_dim();
  }
  require(uc.out_channels == latent, unet_file.string(), ": key \"out_channels\" = ", uc.out_channels, ": expected ",
          latent, ", the ", latent_key, " of ", ae_file.string(), " (the UNet's output is the decoder's latent)");
  if (li.kind == LatentPipelineKind::ldm_super_resolution)
    require(uc.in_channels > latent, unet_file.string(), ": key \"in_channels\" = ", uc.in_channels,
            ": expected more than the ", latent, " latent channels of ", ae_file.string(),
            " (latents and the low-resolution image are concatenated)");
  else
    require(uc.in_channels == latent, unet_file.string(), ": key \"in_channels\" = ", uc.in_channels, ": expected ",
            latent, ", the ", latent_key, " of ", ae_file.string());

  nn::UNet2D<T, B> unet = load_unet2d<T, B>(dir / "unet", opt);
  LatentAutoencoder<T, B> ae = kl ? LatentAutoencoder<T, B>(load_autoencoder_kl<T, B>(dir / ae_name, opt))
                                  : LatentAutoencoder<T, B>(load_vq_model<T, B>(dir / ae_name, opt));
  return LatentPipeline<T, B>(li.kind, std::move(unet), std::move(ae), sched);
}

// The model_index.json of a pipeline (diffusers 0.40's layout).
template <Scalar T, backend::Backend B>
ModelIndex latent_pipeline_model_index(const LatentPipeline<T, B>& p) {
  ModelIndex m;
  m.class_name = std::string(p.class_name());
  m.diffusers_version = "0.40.0";
  for (const auto& spec : latent_pipeline_components(p.kind()))
    m.components[std::string(spec.name)] =
        PipelineComponent{"diffusers", spec.class_name.empty() ? std::string(scheduler_class_name(p.scheduler()))
                                                               : std::string(spec.class_name)};
  return m;
}

// Writes the pipeline folder `dir` (replacing a previous one only when the new one is complete).
template <Scalar T, backend::Backend B>
void save_latent_pipeline(const LatentPipeline<T, B>& p, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  using pipeline_io_detail::sibling;
  std::error_code ec;
  require(!dir.filename().empty(), dir.string(), ": expected a folder name (without a trailing '/')");
  const fs::path tmp = sibling(dir, ".tmp");
  try {
    fs::create_directories(tmp / "scheduler", ec);
    require(!ec, tmp.string(), ": cannot create the folder: ", ec.message());
    save_unet2d(p.unet(), tmp / "unet");
    if (const auto* vq = std::get_if<nn::VQModel<T, B>>(&p.autoencoder()))
      save_vq_model(*vq, tmp / "vqvae");
    else
      save_autoencoder_kl(std::get<nn::AutoencoderKL<T, B>>(p.autoencoder()), tmp / "vae");
    write_scheduler_config(tmp / "scheduler" / kSchedulerConfigFile, p.scheduler());
    write_model_index(tmp / kModelIndexFile, latent_pipeline_model_index(p));
    if (!fs::exists(dir)) {
      fs::rename(tmp, dir, ec);
      require(!ec, dir.string(), ": cannot rename the new folder into place: ", ec.message());
      return;
    }
    require(fs::is_directory(dir), dir.string(), ": exists and is not a folder");
    const fs::path old = sibling(dir, ".old");
    fs::rename(dir, old, ec);
    require(!ec, dir.string(), ": cannot move the previous folder aside: ", ec.message());
    fs::rename(tmp, dir, ec);
    if (ec) {
      std::error_code ignored;
      fs::rename(old, dir, ignored);
      fail(dir.string(), ": cannot rename the new folder into place: ", ec.message());
    }
    fs::remove_all(old, ec);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace ddpm::io
