#pragma once
// 8-bit images: PNG writing and PNG/JPEG/BMP/... reading through stb_image
// (Debian's libstb-dev, linked as -lstb), plus tiling a batch of images into
// one grid picture.
#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
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

// Largest image accepted on load, per side and in pixels (64 Mpx, e.g.
// 8192 x 8192): checked on the header before decoding, so a small file whose
// header lies cannot make a decoder allocate gigabytes (a 16-bit RGBA PNG
// header claiming 16384 x 16384 made stb_image request ~2^64 bytes: found by
// tests/fuzz/fuzz_image).
inline constexpr int kMaxImageSide = 16384;
inline constexpr std::int64_t kMaxImagePixels = std::int64_t{1} << 26;

// The most pixels a file of `n` bytes starting with `p` can really hold: the
// best compression its format allows, with margin, and at least 65536. A
// header claiming more would have the decoder fill the rest with garbage
// (stb_image's HDR reader took minutes and 1.3 GB for a 60-byte file
// claiming 8192 x 8192: found by tests/fuzz/fuzz_image).
inline std::int64_t max_plausible_pixels(const unsigned char* p, std::size_t n) {
  const auto starts = [&](const char* magic, std::size_t k) { return n >= k && std::memcmp(p, magic, k) == 0; };
  std::int64_t per_byte = 256;                        // BMP, TGA, PNM, HDR, PSD, PIC: run-length coding at best
  if (starts("\x89PNG", 4)) per_byte = 16384;        // deflate (1032:1) of 1-bit rows
  else if (starts("GIF8", 4)) per_byte = 4096;        // LZW
  else if (starts("\xFF\xD8", 2)) per_byte = 1024;  // JPEG: at least a bit per 8 x 8 block
  return std::max<std::int64_t>(std::int64_t{1} << 16, per_byte * static_cast<std::int64_t>(n));
}

// The largest symbol count among the JPEG Huffman tables (DHT segments) stb_image
// would read, or 0 for a file that is not a JPEG. stb_image 2.27 (Debian's
// libstb) writes past a 257-byte array when a table declares more than 256
// symbols (fixed upstream in 2.28; found by tests/fuzz/fuzz_image), so such a
// file must not reach it. Walks the marker segments as stb_image does, skipping
// entropy-coded data, so tables between progressive scans are checked too.
// Also flags a scan (SOS) that uses a Huffman table no DHT before it defined:
// stb_image 2.27 then decodes with an uninitialised table and indexes far out
// of bounds (also found by fuzz_image).
struct JpegHuffmanCheck {
  int most_symbols = 0;
  bool undefined_table = false;
};

inline JpegHuffmanCheck check_jpeg_huffman(const unsigned char* p, std::size_t n) {
  JpegHuffmanCheck out;
  bool defined[2][4] = {};  // [DC = 0, AC = 1][table id]
  // SOI: 0xFF, any number of 0xFF fill bytes, then 0xD8 (stbi__get_marker).
  std::size_t i = 1;
  while (i < n && p[i] == 0xFF) ++i;
  if (n < 2 || p[0] != 0xFF || i >= n || p[i] != 0xD8) return out;
  ++i;
  while (i + 1 < n) {
    if (p[i] != 0xFF || p[i + 1] == 0xFF) {  // entropy-coded data, junk or fill bytes
      ++i;
      continue;
    }
    const unsigned m = p[i + 1];
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {  // stuffed 0xFF, TEM, RSTn: no length
      i += 2;
      continue;
    }
    if (m == 0xD9 || i + 3 >= n) break;  // EOI
    const std::size_t len = (std::size_t{p[i + 2]} << 8) | p[i + 3];
    if (m == 0xC4) {
      std::ptrdiff_t left = static_cast<std::ptrdiff_t>(len) - 2;
      std::size_t q = i + 4;
      // stb_image reads bytes past the end as 0, so a table cut short by the
      // end of the file still counts the bytes that are there.
      while (left > 0 && q + 1 < n) {
        if ((p[q] >> 4) <= 1 && (p[q] & 15) <= 3) defined[p[q] >> 4][p[q] & 15] = true;
        int count = 0;
        for (std::size_t k = 1; k <= 16 && q + k < n; ++k) count += p[q + k];
        out.most_symbols = std::max(out.most_symbols, count);
        q += 17 + static_cast<std::size_t>(count);
        left -= 17 + count;
      }
    }
    if (m == 0xDA && i + 4 < n) {  // SOS: Ns, then (Cs, Td << 4 | Ta) per component, Ss, Se
      const std::size_t ns = p[i + 4], spec = i + 5 + 2 * ns;
      const bool dc = spec >= n || p[spec] == 0, ac = spec + 1 >= n || p[spec + 1] != 0;
      for (std::size_t c = 0; c < ns && i + 6 + 2 * c < n; ++c) {
        const unsigned td = p[i + 6 + 2 * c] >> 4, ta = p[i + 6 + 2 * c] & 15;
        if ((dc && td <= 3 && !defined[0][td]) || (ac && ta <= 3 && !defined[1][ta])) out.undefined_table = true;
      }
    }
    i += 2 + len;
  }
  return out;
}

// The header numbers (width, height, maximum value) of a binary PNM (P5, P6)
// as stb_image 2.27 reads them; `fits` is false when one has more than 8
// digits, which that version accumulates in an int without an overflow check
// (undefined behaviour; found by tests/fuzz/fuzz_image).
struct PnmHeader {
  bool binary_pnm = false;
  bool fits = true;
  long numbers[3] = {0, 0, 0};
};

inline PnmHeader read_pnm_header(const unsigned char* p, std::size_t n) {
  PnmHeader h;
  if (n < 2 || p[0] != 'P' || (p[1] != '5' && p[1] != '6')) return h;
  h.binary_pnm = true;
  std::size_t i = 2;
  for (long& number : h.numbers) {
    while (i < n && (std::isspace(p[i]) || p[i] == '#')) {  // whitespace and comments, as stb_image skips them
      if (p[i] == '#')
        while (i < n && p[i] != '\n' && p[i] != '\r') ++i;
      else
        ++i;
    }
    std::size_t digits = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; ++i, ++digits)
      if (digits < 8) number = number * 10 + (p[i] - '0');
    if (digits > 8) h.fits = false;
  }
  return h;
}

// The chunk layout of a PNG as stb_image 2.27 walks it: `fits` is false when a
// chunk's length runs past the end of the file (stb_image allocates an IDAT
// chunk's claimed length, up to 1 GiB, before reading it); `empty_idat` is
// true when an IDAT chunk holds no data (stb_image then copies zero bytes to
// a null buffer, undefined behaviour). Both found by tests/fuzz/fuzz_image.
struct PngChunks {
  bool fits = true;
  bool empty_idat = false;
};

inline std::size_t png_chunk_length(const unsigned char* p) {
  return (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | p[3];
}

inline bool is_png(const unsigned char* p, std::size_t n) {
  return n >= 8 && std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0;
}

inline PngChunks scan_png_chunks(const unsigned char* p, std::size_t n) {
  PngChunks out;
  if (!is_png(p, n)) return out;
  for (std::size_t i = 8; i + 8 <= n;) {
    const std::size_t len = png_chunk_length(p + i);
    if (len > n - i - 8) {  // 8 bytes of length and type, then the data
      out.fits = false;
      break;
    }
    if (std::memcmp(p + i + 4, "IEND", 4) == 0) break;
    if (len == 0 && std::memcmp(p + i + 4, "IDAT", 4) == 0) out.empty_idat = true;
    i += 12 + len;  // length, type, data, CRC
  }
  return out;
}

// The same PNG without its empty IDAT chunks: they carry no image data, so
// the picture is unchanged, and stb_image never sees a zero-length copy.
// Expects a file scan_png_chunks found to fit.
inline std::vector<char> drop_empty_png_idat(const unsigned char* p, std::size_t n) {
  std::vector<char> out(p, p + 8);
  std::size_t i = 8;
  for (; i + 8 <= n;) {
    const std::size_t len = png_chunk_length(p + i), end = std::min(n, i + 12 + len);
    const bool iend = std::memcmp(p + i + 4, "IEND", 4) == 0;
    if (iend) break;
    if (len != 0 || std::memcmp(p + i + 4, "IDAT", 4) != 0) out.insert(out.end(), p + i, p + end);
    i = end;
  }
  out.insert(out.end(), p + std::min(i, n), p + n);  // IEND and whatever follows, as it was
  return out;
}

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

namespace detail {
// Interleaved 8-bit pixels with `from` channels (gray, gray+alpha, RGB, RGBA)
// to `to` channels (1 or 3); alpha is dropped and gray uses stb_image's
// integer luma (77 R + 150 G + 29 B) / 256, so results match its own conversion.
inline Image convert_channels(const std::uint8_t* src, int w, int h, int from, int to) {
  const std::size_t n = static_cast<std::size_t>(w) * h;
  Image img{w, h, to, std::vector<std::uint8_t>(n * to)};
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* px = src + i * from;
    std::uint8_t* out = img.pixels.data() + i * to;
    const bool color = from >= 3;
    if (to == 1)
      out[0] = color ? static_cast<std::uint8_t>((px[0] * 77 + px[1] * 150 + px[2] * 29) >> 8) : px[0];
    else
      for (int k = 0; k < 3; ++k) out[k] = color ? px[k] : px[0];
  }
  return img;
}
}  // namespace detail

// Loads any format stb_image reads, converted to `channels` (1 or 3).
inline Image load_image(const std::filesystem::path& path, int channels = 1) {
  require(channels == 1 || channels == 3, "load_image: channels must be 1 or 3, got ", channels);
  const auto bytes = read_file(path, std::size_t{1} << 30);
  require(bytes.size() <= static_cast<std::size_t>(INT32_MAX), path.string(), ": file too large");
  int w = 0, h = 0, c = 0;
  const auto* buf = reinterpret_cast<const stbi_uc*>(bytes.data());
  const JpegHuffmanCheck huffman = check_jpeg_huffman(buf, bytes.size());
  require(huffman.most_symbols <= 256, path.string(), ": corrupt JPEG: a Huffman table (DHT) declares ",
          huffman.most_symbols, " symbols, expected at most 256");
  require(!huffman.undefined_table, path.string(),
          ": corrupt JPEG: a scan uses a Huffman table that no DHT segment defines");
  const PnmHeader pnm = read_pnm_header(buf, bytes.size());
  require(pnm.fits, path.string(), ": corrupt PNM header: width, height or maximum value has more than 8 digits");
  // stb_image 2.27 reads 16-bit PNM samples in the machine's byte order, not
  // the format's big-endian one: refused rather than decoded wrong.
  require(!pnm.binary_pnm || pnm.numbers[2] <= 255, path.string(), ": 16-bit PNM (maximum value ", pnm.numbers[2],
          ") is not supported, expected a maximum value of at most 255 (8-bit samples)");
  const PngChunks png = scan_png_chunks(buf, bytes.size());
  require(png.fits, path.string(), ": corrupt PNG: a chunk claims more bytes than the file holds");
  const std::vector<char> cleaned = png.empty_idat ? drop_empty_png_idat(buf, bytes.size()) : std::vector<char>{};
  if (png.empty_idat) buf = reinterpret_cast<const stbi_uc*>(cleaned.data());
  const int size = static_cast<int>(png.empty_idat ? cleaned.size() : bytes.size());
  require(stbi_info_from_memory(buf, size, &w, &h, &c) != 0, path.string(),
          ": not an image stb_image can read (", stbi_failure_reason(), ")");
  require(w > 0 && h > 0 && w <= kMaxImageSide && h <= kMaxImageSide, path.string(), ": image is ", w, "x", h,
          ", expected sides in [1, ", kMaxImageSide, "]");
  require(std::int64_t{w} * h <= kMaxImagePixels, path.string(), ": image is ", w, "x", h, " = ", std::int64_t{w} * h,
          " pixels, more than the ", kMaxImagePixels, " allowed");
  require(std::int64_t{w} * h <= max_plausible_pixels(buf, static_cast<std::size_t>(size)), path.string(), ": image header claims ", w,
          "x", h, " pixels, more than a file of ", bytes.size(), " bytes can hold (truncated or corrupt file?)");
  // Decoded in the file's own channel count and converted here: stb_image
  // 2.27's conversion of 16-bit PNM reads past its buffer (tests/fuzz/fuzz_image).
  stbi_uc* data = stbi_load_from_memory(buf, size, &w, &h, &c, 0);
  require(data != nullptr, path.string(), ": cannot decode image (", stbi_failure_reason(), ")");
  std::unique_ptr<stbi_uc, decltype(&stbi_image_free)> owned(data, &stbi_image_free);
  require(c >= 1 && c <= 4, path.string(), ": decoded image has ", c, " channels, expected 1 to 4");
  return detail::convert_channels(data, w, h, c, channels);
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
