#pragma once
// UNet2DConfig: every key of diffusers' UNet2DModel (v0.40) with diffusers'
// defaults, as a plain struct. Reading and writing config.json lives in
// io/unet_config_json.hpp; this header knows nothing of JSON.
//
// Supported subset (validate() names the key and what is supported):
//   time_embedding_type  "positional"
//   down_block_types     DownBlock2D, AttnDownBlock2D
//   up_block_types       UpBlock2D, AttnUpBlock2D
//   mid_block_type       "UNetMidBlock2D" or none
//   downsample_type / upsample_type  "conv"
//   act_fn               "silu" (or its alias "swish")
//   resnet_time_scale_shift  "default", "scale_shift"
//   class_embed_type     none (num_class_embeds selects nn.Embedding)
//
// Note diffusers' defaults that surprise: attention_head_dim is 8 (so a
// config that omits it gets multi-head attention), freq_shift 0 and
// flip_sin_to_cos true (google/ddpm-* checkpoints use 1 and false).
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"

namespace ddpm::nn {

struct UNet2DConfig {
  // null, an int (one entry) or [height, width] (two entries). Informational:
  // the network accepts any size divisible by 2^(levels - 1).
  std::vector<int> sample_size;
  int in_channels = 3;
  int out_channels = 3;
  bool center_input_sample = false;
  std::string time_embedding_type = "positional";
  std::optional<int> time_embedding_dim;  // null: 4 * block_out_channels[0]
  int freq_shift = 0;
  bool flip_sin_to_cos = true;
  std::vector<std::string> down_block_types{"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"};
  std::optional<std::string> mid_block_type = std::string("UNetMidBlock2D");
  std::vector<std::string> up_block_types{"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
  std::vector<int> block_out_channels{224, 448, 672, 896};
  int layers_per_block = 2;
  double mid_block_scale_factor = 1.0;
  int downsample_padding = 1;
  std::string downsample_type = "conv";
  std::string upsample_type = "conv";
  // Dropout in the ResNet blocks (nn/dropout.hpp): applied in a training
  // forward given per-sample streams (UNet2D::set_dropout_rngs, which the
  // trainer calls); the identity in inference.
  double dropout = 0.0;
  std::string act_fn = "silu";
  std::optional<int> attention_head_dim = 8;  // null: one head of size C
  int norm_num_groups = 32;
  std::optional<int> attn_norm_num_groups;  // mid-block attention only
  double norm_eps = 1e-5;
  std::string resnet_time_scale_shift = "default";
  bool add_attention = true;
  std::optional<std::string> class_embed_type;
  std::optional<int> num_class_embeds;
  std::optional<int> num_train_timesteps;  // used only by "learned" time embeddings
  // Not a diffusers key: the channels of a conditioning image concatenated to
  // the noisy input (Conditioning::image; SR3 / LDM super-resolution), so the
  // network sees cat([x_t, image], dim=1): in_channels = noise channels +
  // condition_channels, out_channels = the noise channels (or twice them for
  // a learned variance). 0: no image condition. Saved as
  // "ddpm_condition_channels" (io/unet_config_json.hpp) when > 0.
  int condition_channels = 0;
  int noise_channels() const { return in_channels - condition_channels; }

  // Derived quantities.
  int levels() const { return static_cast<int>(block_out_channels.size()); }
  int time_embed_dim() const { return time_embedding_dim ? *time_embedding_dim : 4 * block_out_channels.at(0); }
  bool scale_shift() const { return resnet_time_scale_shift == "scale_shift"; }
  bool has_mid_block() const { return mid_block_type.has_value(); }
  bool has_class_embedding() const { return num_class_embeds.has_value(); }
  // diffusers' attention_head_dim for a block with `channels` channels.
  int head_dim(int channels) const { return attention_head_dim ? *attention_head_dim : channels; }
  // GroupNorm groups of the mid-block attention (0: no GroupNorm there).
  int mid_attention_groups() const {
    if (attn_norm_num_groups) return *attn_norm_num_groups;
    return resnet_time_scale_shift == "default" ? norm_num_groups : 0;
  }

  // Throws ddpm::Error naming the first key whose value is invalid or not
  // supported, with the value and what is supported.
  void validate() const {
    const auto one_of = [](const std::string& key, const std::string& v, std::initializer_list<const char*> ok) {
      std::string list;
      for (const char* s : ok) {
        if (v == s) return;
        list += (list.empty() ? "" : ", ") + std::string("\"") + s + "\"";
      }
      fail("UNet2DConfig: ", key, " = \"", v, "\" is not supported (supported: ", list, ")");
    };
    const auto positive = [](const char* key, double v) {
      require(v > 0, "UNet2DConfig: ", key, " = ", v, " must be > 0");
    };
    positive("in_channels", in_channels);
    positive("out_channels", out_channels);
    require(sample_size.size() <= 2, "UNet2DConfig: sample_size must be null, an int or [height, width]");
    for (int s : sample_size) positive("sample_size", s);
    one_of("time_embedding_type", time_embedding_type, {"positional"});
    if (time_embedding_dim) positive("time_embedding_dim", *time_embedding_dim);
    require(!block_out_channels.empty(), "UNet2DConfig: block_out_channels is empty");
    for (int c : block_out_channels) positive("block_out_channels[i]", c);
    require(down_block_types.size() == block_out_channels.size(), "UNet2DConfig: down_block_types has ",
            down_block_types.size(), " entries but block_out_channels has ", block_out_channels.size());
    require(up_block_types.size() == down_block_types.size(), "UNet2DConfig: up_block_types has ",
            up_block_types.size(), " entries but down_block_types has ", down_block_types.size());
    for (auto& t : down_block_types) one_of("down_block_types[i]", t, {"DownBlock2D", "AttnDownBlock2D"});
    for (auto& t : up_block_types) one_of("up_block_types[i]", t, {"UpBlock2D", "AttnUpBlock2D"});
    if (mid_block_type) one_of("mid_block_type", *mid_block_type, {"UNetMidBlock2D"});
    positive("layers_per_block", layers_per_block);
    positive("mid_block_scale_factor", mid_block_scale_factor);
    require(downsample_padding >= 0, "UNet2DConfig: downsample_padding = ", downsample_padding, " must be >= 0");
    one_of("downsample_type", downsample_type, {"conv"});
    one_of("upsample_type", upsample_type, {"conv"});
    require(dropout >= 0 && dropout < 1, "UNet2DConfig: dropout = ", dropout, " must be in [0, 1)");
    one_of("act_fn", act_fn, {"silu", "swish"});
    if (attention_head_dim) positive("attention_head_dim", *attention_head_dim);
    positive("norm_num_groups", norm_num_groups);
    if (attn_norm_num_groups) positive("attn_norm_num_groups", *attn_norm_num_groups);
    positive("norm_eps", norm_eps);
    one_of("resnet_time_scale_shift", resnet_time_scale_shift, {"default", "scale_shift"});
    require(!class_embed_type, "UNet2DConfig: class_embed_type = \"", class_embed_type.value_or(""),
            "\" is not supported (supported: null, with num_class_embeds for a class embedding table)");
    if (num_class_embeds) positive("num_class_embeds", *num_class_embeds);
    if (num_train_timesteps) positive("num_train_timesteps", *num_train_timesteps);
    require(condition_channels >= 0 && condition_channels < in_channels, "UNet2DConfig: condition_channels = ",
            condition_channels, " must be in [0, in_channels = ", in_channels,
            ") (in_channels = noise channels + condition channels)");
    const int half = block_out_channels[0] / 2;
    require(half - freq_shift != 0 && half > 0, "UNet2DConfig: freq_shift = ", freq_shift,
            " with block_out_channels[0] = ", block_out_channels[0],
            " divides by zero in the timestep embedding (half - freq_shift = 0)");
    // Every GroupNorm must divide its channels and every attention its heads;
    // the U-Net checks these where it builds each layer, naming the layer.
  }
};

}  // namespace ddpm::nn
