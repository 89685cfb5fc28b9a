#pragma once
// The smallest autoencoder layout the tests build (AutoencoderKL or VQModel):
// 2 image channels, two levels of 4 and 6 channels (one downsample), one
// ResNet block per level, GroupNorm over 2 groups. Latent channels, the
// codebook and sample_size stay for each test to choose.
namespace ddpm::test {

template <class Config>
Config tiny_autoencoder(Config c = {}) {
  c.in_channels = 2;
  c.out_channels = 2;
  c.block_out_channels = {4, 6};
  c.down_block_types = {"DownEncoderBlock2D", "DownEncoderBlock2D"};
  c.up_block_types = {"UpDecoderBlock2D", "UpDecoderBlock2D"};
  c.layers_per_block = 1;
  c.norm_num_groups = 2;
  return c;
}

}  // namespace ddpm::test
