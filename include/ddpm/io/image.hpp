#pragma once
// 8-bit images: PNG writing and PNG/JPEG/BMP/... reading through stb_image
// (Debian's libstb-dev, linked as -lstb), plus tiling a batch of images into
// one grid picture.
#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/io/file.hpp"

namespace ddpm::io {

struct Image {
  int width = 0, height = 0, channels = 0;  // channels: 1 gray, 3 RGB
  std::vector<std::uint8_t> pixels;         // row-major, interleaved
};

// Largest image accepted on load (per side); decoders are not asked to
// allocate more than this for a header that lies.
inline constexpr int kMaxImageSide = 16384;

inline void write_png(const std::filesystem::path& path, const Image& img) {
  require(img.width > 0 && img.height > 0 && (img.channels == 1 || img.channels == 3 || img.channels == 4),
          path.string(), ": cannot write a ", img.width, "x", img.height, "x", img.channels, " image");
  require(img.pixels.size() == static_cast<std::size_t>(img.width) * img.height * img.channels, path.string(),
          ": pixel buffer size does not match ", img.width, "x", img.height, "x", img.channels);
  std::vector<char> png;
  const int ok = stbi_write_png_to_func(
      [](void* ctx, void* data, int size) {
        auto* out = static_cast<std::vector<char>*>(ctx);
        out->insert(out->end(), static_cast<char*>(data), static_cast<char*>(data) + size);
      },
      &png, img.width, img.height, img.channels, img.pixels.data(), img.width * img.channels);
  require(ok != 0, path.string(), ": PNG encoding failed");
  write_file_atomically(path, [&](std::ostream& out) { write_bytes(out, png.data(), png.size()); });
}

// Loads any format stb_image reads, converted to `channels` (1 or 3).
inline Image load_image(const std::filesystem::path& path, int channels = 1) {
  require(channels == 1 || channels == 3, "load_image: channels must be 1 or 3, got ", channels);
  const auto bytes = read_file(path, std::size_t{1} << 30);
  require(bytes.size() <= static_cast<std::size_t>(INT32_MAX), path.string(), ": file too large");
  int w = 0, h = 0, c = 0;
  const auto* buf = reinterpret_cast<const stbi_uc*>(bytes.data());
  require(stbi_info_from_memory(buf, static_cast<int>(bytes.size()), &w, &h, &c) != 0, path.string(),
          ": not an image stb_image can read (", stbi_failure_reason(), ")");
  require(w > 0 && h > 0 && w <= kMaxImageSide && h <= kMaxImageSide, path.string(), ": image is ", w, "x", h,
          ", expected sides in [1, ", kMaxImageSide, "]");
  stbi_uc* data = stbi_load_from_memory(buf, static_cast<int>(bytes.size()), &w, &h, &c, channels);
  require(data != nullptr, path.string(), ": cannot decode image (", stbi_failure_reason(), ")");
  Image img{w, h, channels, {data, data + static_cast<std::size_t>(w) * h * channels}};
  stbi_image_free(data);
  return img;
}

// [-1, 1] -> [0, 255], rounded and clamped.
template <Scalar T>
std::uint8_t to_byte(T v) {
  const double x = (static_cast<double>(v) + 1.0) * 127.5;
  return static_cast<std::uint8_t>(x <= 0 ? 0 : x >= 255 ? 255 : x + 0.5);
}

// Tiles images [N, C, H, W] (values in [-1, 1], C = 1 or 3) into a grid with
// `columns` per row and `pad` pixels of `background` between them.
template <Scalar T>
Image make_grid(ConstTensorView<T> images, int columns, int pad = 2, std::uint8_t background = 0) {
  require(images.rank() == 4 && (images.dim(1) == 1 || images.dim(1) == 3),
          "make_grid: expected images [N, 1 or 3, H, W], got ", images.shape().str());
  require(columns > 0, "make_grid: columns must be > 0, got ", columns);
  const int n = static_cast<int>(images.dim(0)), c = static_cast<int>(images.dim(1));
  const int h = static_cast<int>(images.dim(2)), w = static_cast<int>(images.dim(3));
  const int cols = std::min(columns, std::max(n, 1)), rows = (n + cols - 1) / cols;
  Image img{pad + cols * (w + pad), pad + std::max(rows, 1) * (h + pad), c, {}};
  img.pixels.assign(static_cast<std::size_t>(img.width) * img.height * c, background);
  for (int i = 0; i < n; ++i) {
    const int x0 = pad + (i % cols) * (w + pad), y0 = pad + (i / cols) * (h + pad);
    for (int ch = 0; ch < c; ++ch)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          img.pixels[(static_cast<std::size_t>(y0 + y) * img.width + (x0 + x)) * c + ch] =
              to_byte(images[((static_cast<index_t>(i) * c + ch) * h + y) * w + x]);
  }
  return img;
}

}  // namespace ddpm::io
