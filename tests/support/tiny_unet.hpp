#pragma once
// The tiny U-Net config the dropout / image-conditioning tests train: two
// levels [4, 8] (attention at the second), one layer per block, 2 groups,
// sized for 4x4 inputs. in_channels = noise_channels + condition_channels.
#include "ddpm/nn/unet2d_config.hpp"

namespace ddpm::test {

// The layout alone: 2 channels in and out, two levels [4, 8] (attention at
// the second), one layer per block, GroupNorm over 2 groups, heads of 4.
inline nn::UNet2DConfig tiny_unet_layout() {
  nn::UNet2DConfig c;
  c.in_channels = 2;
  c.out_channels = 2;
  c.block_out_channels = {4, 8};
  c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
  c.layers_per_block = 1;
  c.norm_num_groups = 2;
  c.attention_head_dim = 4;
  return c;
}

inline nn::UNet2DConfig tiny_unet_config(int noise_channels, int condition_channels, double dropout) {
  nn::UNet2DConfig c = tiny_unet_layout();
  c.in_channels = noise_channels + condition_channels;
  c.out_channels = noise_channels;
  c.condition_channels = condition_channels;
  c.dropout = dropout;
  c.sample_size = {4};
  return c;
}

}  // namespace ddpm::test
