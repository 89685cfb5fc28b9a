#pragma once
// The latent MNIST models: a small AutoencoderKL (28x28x1 <-> 14x14x2) and
// a class-conditional U-Net on its scaled latents, with the conventions
// diffusers' Stable-Diffusion pipelines use:
//
//   encode:  latents = (posterior.mean - shift_factor) * scaling_factor
//   decode:  image   = vae.decode(latents / scaling_factor + shift_factor)
//
// scaling_factor (1 / std of the latents) and shift_factor (their mean) are
// measured on the training digits after the autoencoder is trained and
// stored in the autoencoder's config.json, as diffusers keeps them.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <string>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/io/autoencoder.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "../mnist/mnist_data.hpp"

#ifndef DDPM_EXAMPLES_DIR
#define DDPM_EXAMPLES_DIR "examples"
#endif

namespace latent {

namespace fs = std::filesystem;
using mnist::kImageSide;
using mnist::kNullLabel;
using mnist::kNumClasses;
using mnist::kPixels;

using VAE = ddpm::nn::AutoencoderKL<float, ddpm::backend::Cpu>;
using UNet = ddpm::nn::UNet2D<float, ddpm::backend::Cpu>;

// The autoencoder: 28 -> 14 (one downsample), `width`, 2 * width channels,
// one ResNet block per level, no mid-block attention, `latent_channels`
// channels of latent. scaling_factor starts at 1 (set after training).
inline ddpm::nn::AutoencoderKLConfig autoencoder_config(int width = 16, int latent_channels = 2) {
  ddpm::nn::AutoencoderKLConfig c;
  c.in_channels = 1;
  c.out_channels = 1;
  c.block_out_channels = {width, 2 * width};
  c.down_block_types = {"DownEncoderBlock2D", "DownEncoderBlock2D"};
  c.up_block_types = {"UpDecoderBlock2D", "UpDecoderBlock2D"};
  c.layers_per_block = 1;
  c.latent_channels = latent_channels;
  c.norm_num_groups = 8;
  c.sample_size = {kImageSide};
  c.mid_block_add_attention = false;
  c.scaling_factor = 1.0;
  c.shift_factor = 0.0;
  c.force_upcast = false;
  return c;
}

// The latent U-Net: diffusers' UNet2DModel on [latent_channels, 14, 14],
// 14 -> 7 with `width`, 2 * width channels, self-attention at 7x7 and in
// the mid block, 11 class embeddings (10 digits + the null label).
inline ddpm::nn::UNet2DConfig unet_config(int latent_channels, int side, int width = 16) {
  ddpm::nn::UNet2DConfig c;
  c.sample_size = {side};
  c.in_channels = latent_channels;
  c.out_channels = latent_channels;
  c.block_out_channels = {width, 2 * width};
  c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
  c.layers_per_block = 1;
  c.norm_num_groups = 8;
  c.attention_head_dim = std::gcd(32, 2 * width);  // heads of 32 channels (16 for narrow widths)
  c.num_class_embeds = kNumClasses + 1;
  return c;
}

// The shipped models: examples/models/latent_mnist/{vae,unet}.
inline fs::path default_models_dir() {
  const fs::path built_in = fs::path(DDPM_EXAMPLES_DIR) / "models" / "latent_mnist";
  if (fs::exists(built_in)) return built_in;
  return fs::path("examples") / "models" / "latent_mnist";
}
inline fs::path vae_dir(const std::string& dir) { return dir.empty() ? default_models_dir() / "vae" : fs::path(dir); }
inline fs::path unet_dir(const std::string& dir) { return dir.empty() ? default_models_dir() / "unet" : fs::path(dir); }

// Loads the autoencoder and checks it fits the example (1-channel 28x28 digits).
inline VAE load_vae(const fs::path& dir) {
  ddpm::require(fs::is_directory(dir), dir.string(), ": no such autoencoder folder (expected config.json and ",
                ddpm::io::kDiffusersWeightsFile, "; train one with `latent_diffusion train-autoencoder`)");
  VAE vae = ddpm::io::load_autoencoder_kl<float, ddpm::backend::Cpu>(dir);
  const auto& c = vae.config();
  ddpm::require(c.in_channels == 1 && c.out_channels == 1, dir.string(),
                "/config.json: in_channels/out_channels: expected 1 (grey digits), got ", c.in_channels, "/",
                c.out_channels);
  ddpm::require(kImageSide % vae.factor() == 0, dir.string(), "/config.json: block_out_channels: a downsampling of ",
                vae.factor(), " does not divide the ", kImageSide, "x", kImageSide, " digits");
  vae.set_mode(ddpm::nn::Mode::Inference);
  return vae;
}

// Loads the latent U-Net and checks its channels match the autoencoder's latent.
inline UNet load_unet(const fs::path& dir, const VAE& vae) {
  ddpm::require(fs::is_directory(dir), dir.string(), ": no such U-Net folder (expected config.json and ",
                ddpm::io::kDiffusersWeightsFile, "; train one with `latent_diffusion train`)");
  UNet unet = ddpm::io::load_unet2d<float, ddpm::backend::Cpu>(dir);
  const auto& c = unet.config();
  ddpm::require(c.in_channels == vae.config().latent_channels && c.out_channels == vae.config().latent_channels,
                dir.string(), "/config.json: in_channels/out_channels = ", c.in_channels, "/", c.out_channels,
                ": expected the autoencoder's latent_channels ", vae.config().latent_channels);
  ddpm::require(c.num_class_embeds && *c.num_class_embeds == kNumClasses + 1, dir.string(),
                "/config.json: num_class_embeds: expected ", kNumClasses + 1, " (10 digits + the null label)");
  unet.set_mode(ddpm::nn::Mode::Inference);
  return unet;
}

// The latent's spatial side for the digits.
inline ddpm::index_t latent_side(const VAE& vae) { return kImageSide / vae.factor(); }

// Checks that `images` are [N, 1, 28, 28] digits; `what` names their source.
inline void require_digits(ddpm::ConstTensorView<float> images, const std::string& what) {
  ddpm::require(images.rank() == 4 && images.dim(1) == 1 && images.dim(2) == kImageSide &&
                    images.dim(3) == kImageSide,
                what, ": expected ", kImageSide, "x", kImageSide, " grey images, got ", images.shape().str());
}

// Digits [N, 1, 28, 28] in [-1, 1] -> scaled latents (posterior means),
// `batch` images per encoder call.
inline ddpm::Tensor<float> encode(VAE& vae, ddpm::ConstTensorView<float> images, ddpm::index_t batch = 100) {
  vae.set_mode(ddpm::nn::Mode::Inference);
  const auto& c = vae.config();
  const double scale = c.scaling_factor, shift = c.shift_factor.value_or(0.0);
  const ddpm::index_t n = images.dim(0), s = latent_side(vae);
  ddpm::Tensor<float> out({n, c.latent_channels, s, s});
  const ddpm::index_t per = c.latent_channels * s * s;
  for (ddpm::index_t first = 0; first < n; first += batch) {
    const ddpm::index_t count = std::min(batch, n - first);
    const auto mean = vae.encode(images.slice(first, count)).mean();
    for (ddpm::index_t k = 0; k < count * per; ++k)
      out[first * per + k] = static_cast<float>((static_cast<double>(mean[k]) - shift) * scale);
  }
  return out;
}

// Scaled latents -> digits [N, 1, 28, 28]: decode(latents / scaling_factor + shift_factor).
inline ddpm::Tensor<float> decode(VAE& vae, ddpm::ConstTensorView<float> latents, ddpm::index_t batch = 100) {
  vae.set_mode(ddpm::nn::Mode::Inference);
  const auto& c = vae.config();
  const double scale = c.scaling_factor, shift = c.shift_factor.value_or(0.0);
  const ddpm::index_t n = latents.dim(0), per = latents.numel() / std::max<ddpm::index_t>(n, 1);
  ddpm::Tensor<float> out({n, 1, kImageSide, kImageSide});
  ddpm::Tensor<float> z;
  for (ddpm::index_t first = 0; first < n; first += batch) {
    const ddpm::index_t count = std::min(batch, n - first);
    z.resize({count, latents.dim(1), latents.dim(2), latents.dim(3)});
    for (ddpm::index_t k = 0; k < count * per; ++k)
      z[k] = static_cast<float>(static_cast<double>(latents[first * per + k]) / scale + shift);
    const auto y = vae.decode(z.cview());
    std::copy(y.begin(), y.end(), out.data() + first * kPixels);
  }
  return out;
}

}  // namespace latent
