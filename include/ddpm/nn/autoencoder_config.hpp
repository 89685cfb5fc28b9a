#pragma once
// The configs of diffusers' AutoencoderKL and VQModel (v0.40), every key with
// diffusers' defaults, as plain structs. Reading and writing config.json lives
// in io/autoencoder_config_json.hpp; this header knows nothing of JSON.
//
// Both models share the encoder/decoder layout (AutoencoderLayout):
//   down_block_types   "DownEncoderBlock2D" only
//   up_block_types     "UpDecoderBlock2D" only
//   act_fn             "silu" (or its alias "swish")
// VQModel: norm_type "group" only (diffusers' "spatial" decoder norm is not
// supported), lookup_from_codebook false only.
//
// scaling_factor, shift_factor, latents_mean/std and force_upcast are config
// only: the models never apply them (pipelines do; see the README of the
// golden `autoencoder` kind).
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"

namespace ddpm::nn {

// What AutoencoderKL and VQModel share: the encoder/decoder layout.
struct AutoencoderLayout {
  int in_channels = 3;
  int out_channels = 3;
  std::vector<std::string> down_block_types{"DownEncoderBlock2D"};
  std::vector<std::string> up_block_types{"UpDecoderBlock2D"};
  std::vector<int> block_out_channels{64};
  int layers_per_block = 1;
  std::string act_fn = "silu";
  int latent_channels = 4;
  int norm_num_groups = 32;
  // null, an int or [height, width]. Informational.
  std::vector<int> sample_size{32};
  double scaling_factor = 0.18215;
  bool force_upcast = true;
  bool mid_block_add_attention = true;

  int levels() const { return static_cast<int>(block_out_channels.size()); }
  // The spatial downsampling factor of the encoder, 2^(levels - 1).
  int downsampling() const { return 1 << (levels() - 1); }

 protected:
  // Throws "<cls>: <key> = <value> ..." for the first bad key.
  void validate_layout(const char* cls) const {
    const auto positive = [cls](const char* key, double v) { require(v > 0, cls, ": ", key, " = ", v, " must be > 0"); };
    const auto only = [cls](const char* key, const std::string& v, std::initializer_list<const char*> ok) {
      std::string list;
      for (const char* s : ok) {
        if (v == s) return;
        list += (list.empty() ? "" : ", ") + std::string("\"") + s + "\"";
      }
      fail(cls, ": ", key, " = \"", v, "\" is not supported (supported: ", list, ")");
    };
    positive("in_channels", in_channels);
    positive("out_channels", out_channels);
    positive("latent_channels", latent_channels);
    positive("layers_per_block", layers_per_block);
    positive("norm_num_groups", norm_num_groups);
    require(!block_out_channels.empty(), cls, ": block_out_channels is empty");
    require(block_out_channels.size() <= 16, cls, ": block_out_channels has ", block_out_channels.size(),
            " entries (at most 16 levels are supported)");
    for (int c : block_out_channels) {
      positive("block_out_channels[i]", c);
      require(c % norm_num_groups == 0, cls, ": norm_num_groups = ", norm_num_groups,
              " does not divide block_out_channels entry ", c);
    }
    require(down_block_types.size() == block_out_channels.size(), cls, ": down_block_types has ",
            down_block_types.size(), " entries but block_out_channels has ", block_out_channels.size());
    require(up_block_types.size() == block_out_channels.size(), cls, ": up_block_types has ", up_block_types.size(),
            " entries but block_out_channels has ", block_out_channels.size());
    for (auto& t : down_block_types) only("down_block_types[i]", t, {"DownEncoderBlock2D"});
    for (auto& t : up_block_types) only("up_block_types[i]", t, {"UpDecoderBlock2D"});
    only("act_fn", act_fn, {"silu", "swish"});
    require(sample_size.size() <= 2, cls, ": sample_size must be null, an int or [height, width]");
    for (int s : sample_size) positive("sample_size", s);
    require(scaling_factor == scaling_factor && scaling_factor != 0, cls, ": scaling_factor = ", scaling_factor,
            " must be a nonzero number");
  }
};

// diffusers' AutoencoderKL.
struct AutoencoderKLConfig : AutoencoderLayout {
  std::optional<double> shift_factor;
  std::optional<std::vector<double>> latents_mean, latents_std;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;

  void validate() const {
    validate_layout("AutoencoderKL");
    if (shift_factor)
      require(*shift_factor == *shift_factor, "AutoencoderKL: shift_factor = ", *shift_factor, " must be a number");
  }
};

// diffusers' VQModel.
struct VQModelConfig : AutoencoderLayout {
  VQModelConfig() {
    latent_channels = 3;
    force_upcast = false;
  }
  int num_vq_embeddings = 256;
  std::optional<int> vq_embed_dim;  // null: latent_channels
  std::string norm_type = "group";
  bool lookup_from_codebook = false;

  int embed_dim() const { return vq_embed_dim ? *vq_embed_dim : latent_channels; }

  void validate() const {
    validate_layout("VQModel");
    require(num_vq_embeddings > 0, "VQModel: num_vq_embeddings = ", num_vq_embeddings, " must be > 0");
    if (vq_embed_dim) require(*vq_embed_dim > 0, "VQModel: vq_embed_dim = ", *vq_embed_dim, " must be > 0");
    require(norm_type == "group", "VQModel: norm_type = \"", norm_type,
            "\" is not supported (supported: \"group\"; the \"spatial\" decoder norm is not implemented)");
    require(!lookup_from_codebook, "VQModel: lookup_from_codebook = true is not supported (supported: false)");
  }
};

}  // namespace ddpm::nn
