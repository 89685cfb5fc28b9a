#pragma once
// MNIST-style data (IDX files) and the example's U-Net.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/io/idx.hpp"
#include "ddpm/nn/unet2d_config.hpp"

namespace mnist {

namespace fs = std::filesystem;

inline constexpr int kImageSide = 28;                             // MNIST digits are 28 x 28
inline constexpr ddpm::index_t kPixels = kImageSide * kImageSide;  // per (one-channel) image

// Images [N, 1, kImageSide, kImageSide] in [-1, 1] and their labels.
struct Dataset {
  ddpm::Tensor<float> images;
  std::vector<std::int64_t> labels;
  ddpm::index_t size() const { return images.empty() ? 0 : images.dim(0); }
};

// `dir`/<split>-images-idx3-ubyte[.gz] and <split>-labels-idx1-ubyte[.gz],
// split "train" or "t10k" (the names of LeCun's and Zalando's files).
inline fs::path find_idx(const fs::path& dir, const std::string& split, const std::string& kind) {
  const std::string base = split + "-" + kind;
  for (const char* ext : {"", ".gz"})
    if (fs::exists(dir / (base + ext))) return dir / (base + ext);
  ddpm::fail(dir.string(), ": no ", base, "[.gz] (fetch the data with examples/mnist/scripts/fetch_mnist.sh)");
}

// IDX3 images that must be 28 x 28 (the model's size), in [-1, 1]; `what`
// names the option in the error.
inline ddpm::Tensor<float> load_images_28(const fs::path& file, const std::string& what) {
  auto images = ddpm::io::load_idx_images<float>(file);
  ddpm::require(images.dim(2) == kImageSide && images.dim(3) == kImageSide, what, ": expected ", kImageSide, "x",
                kImageSide, " images, got ", images.dim(2), "x", images.dim(3), " (", file.string(), ")");
  return images;
}

inline Dataset load_split(const fs::path& dir, const std::string& split, ddpm::index_t limit = 0) {
  Dataset d;
  d.images = ddpm::io::load_idx_images<float>(find_idx(dir, split, "images-idx3-ubyte"));
  d.labels = ddpm::io::load_idx_labels(find_idx(dir, split, "labels-idx1-ubyte"));
  ddpm::require(static_cast<ddpm::index_t>(d.labels.size()) == d.images.dim(0), dir.string(), ": ", d.images.dim(0),
                " ", split, " images but ", d.labels.size(), " labels");
  ddpm::require(d.images.dim(2) == kImageSide && d.images.dim(3) == kImageSide, dir.string(), ": expected ",
                kImageSide, "x", kImageSide, " images, got ",
                d.images.shape().str());
  if (limit > 0 && limit < d.size()) {
    ddpm::Tensor<float> head({limit, 1, kImageSide, kImageSide},
                             std::span<const float>(d.images.data(), static_cast<std::size_t>(limit * kPixels)));
    d.images = std::move(head);
    d.labels.resize(static_cast<std::size_t>(limit));
  }
  return d;
}

// Copies images `idx` of `d` into a batch [idx.size(), 1, kImageSide, kImageSide].
inline void gather(const Dataset& d, std::span<const ddpm::index_t> idx, ddpm::Tensor<float>& out,
                   std::vector<std::int64_t>& labels) {
  const auto n = static_cast<ddpm::index_t>(idx.size());
  if (!(out.shape() == ddpm::Shape{n, 1, kImageSide, kImageSide})) out.resize({n, 1, kImageSide, kImageSide});
  labels.resize(idx.size());
  for (ddpm::index_t i = 0; i < n; ++i) {
    const auto j = idx[static_cast<std::size_t>(i)];
    std::copy(d.images.data() + j * kPixels, d.images.data() + (j + 1) * kPixels, out.data() + i * kPixels);
    labels[static_cast<std::size_t>(i)] = d.labels[static_cast<std::size_t>(j)];
  }
}

inline constexpr int kNumClasses = 10;
inline constexpr std::int64_t kNullLabel = 10;  // "no label": what label dropout trains for guidance

// The example's class-conditional U-Net (diffusers' UNet2DModel):
// 28 -> 14 -> 7 with `width`, 2 * width, 4 * width channels, one ResNet
// block per level, self-attention only at 7x7 and in the mid block, and
// 11 class embeddings (10 digits + the null label).
inline ddpm::nn::UNet2DConfig unet_config(int width = 16) {
  ddpm::nn::UNet2DConfig c;
  c.sample_size = {kImageSide};
  c.in_channels = 1;
  c.out_channels = 1;
  c.block_out_channels = {width, 2 * width, 4 * width};
  c.down_block_types = {"DownBlock2D", "DownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "UpBlock2D", "UpBlock2D"};
  c.layers_per_block = 1;
  c.norm_num_groups = 8;
  c.attention_head_dim = 32;
  c.num_class_embeds = kNumClasses + 1;
  return c;
}

}  // namespace mnist
