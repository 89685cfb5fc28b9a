#pragma once
// The IDX format of MNIST and Fashion-MNIST (LeCun et al.):
//   bytes 0-1: 0, byte 2: element type (0x08 unsigned byte), byte 3: rank,
//   then rank big-endian uint32 extents, then the elements (big-endian).
// Files may be gzip-compressed (train-images-idx3-ubyte.gz); zlib reads both.
//
// Only unsigned bytes are read and written, which is what every published
// IDX image and label file uses. A header is checked before any allocation
// that depends on it: a file cannot make the reader allocate more than the
// data it really holds.
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/io/file.hpp"

namespace ddpm::io {

struct IdxArray {
  std::vector<index_t> dims;
  std::vector<std::uint8_t> data;
  index_t numel() const {
    index_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
};

namespace detail {
struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzHandle = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

// Reads exactly `n` bytes or reports how many there were.
inline std::size_t gz_read(gzFile f, void* dst, std::size_t n) {
  std::size_t got = 0;
  auto* p = static_cast<unsigned char*>(dst);
  while (got < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 30));
    const int r = gzread(f, p + got, chunk);
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}
}  // namespace detail

// Largest element count accepted (4 GiB of bytes): far above any dataset in
// this format, far below what would exhaust memory.
inline constexpr std::uint64_t kIdxMaxElements = std::uint64_t{1} << 32;

inline IdxArray read_idx(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::error_code ec;
  require(std::filesystem::exists(path, ec), file, ": file not found");
  require(std::filesystem::is_regular_file(path, ec), file, ": not a regular file");
  detail::GzHandle f(gzopen(file.c_str(), "rb"));
  require(f != nullptr, file, ": cannot open");
  unsigned char magic[4];
  require(detail::gz_read(f.get(), magic, 4) == 4, file, ": too short for an IDX header (4-byte magic)");
  require(magic[0] == 0 && magic[1] == 0, file, ": not an IDX file (magic bytes 0-1 must be 0, got ",
          int(magic[0]), ", ", int(magic[1]), ")");
  require(magic[2] == 0x08, file, ": IDX element type 0x", std::hex, int(magic[2]), std::dec,
          " not supported (expected 0x08, unsigned byte)");
  const int rank = magic[3];
  require(rank >= 1 && rank <= 4, file, ": IDX rank ", rank, " not supported (expected 1 to 4)");
  IdxArray a;
  std::uint64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    unsigned char b[4];
    require(detail::gz_read(f.get(), b, 4) == 4, file, ": truncated IDX header (extent ", i, ")");
    const std::uint64_t d = (std::uint64_t{b[0]} << 24) | (std::uint64_t{b[1]} << 16) | (std::uint64_t{b[2]} << 8) | b[3];
    count *= d;
    require(count <= kIdxMaxElements, file, ": IDX header claims more than ", kIdxMaxElements, " elements");
    a.dims.push_back(static_cast<index_t>(d));
  }
  // Grow as data arrives, so a lying header costs at most what the file holds.
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  while (a.data.size() < count) {
    const std::size_t want = std::min<std::size_t>(kChunk, count - a.data.size());
    const std::size_t at = a.data.size();
    a.data.resize(at + want);
    const std::size_t got = detail::gz_read(f.get(), a.data.data() + at, want);
    require(got == want, file, ": truncated: header promises ", count, " bytes of data, file holds ", at + got);
  }
  unsigned char extra;
  require(detail::gz_read(f.get(), &extra, 1) == 0, file, ": trailing bytes after the ", count,
          " data bytes the header describes");
  return a;
}

// Images [N, H, W] (IDX3) as a float tensor [N, 1, H, W] scaled to [-1, 1].
template <Scalar T>
Tensor<T> load_idx_images(const std::filesystem::path& path) {
  const IdxArray a = read_idx(path);
  require(a.dims.size() == 3, path.string(), ": expected an IDX3 image file [N, H, W], got rank ", a.dims.size());
  Tensor<T> out({a.dims[0], 1, a.dims[1], a.dims[2]});
  for (index_t i = 0; i < out.numel(); ++i)
    out[i] = static_cast<T>(a.data[static_cast<std::size_t>(i)]) / T(127.5) - T(1);
  return out;
}

// Labels [N] (IDX1), each checked to be < num_classes.
inline std::vector<std::int64_t> load_idx_labels(const std::filesystem::path& path, int num_classes = 10) {
  const IdxArray a = read_idx(path);
  require(a.dims.size() == 1, path.string(), ": expected an IDX1 label file [N], got rank ", a.dims.size());
  std::vector<std::int64_t> out(a.data.begin(), a.data.end());
  for (std::size_t i = 0; i < out.size(); ++i)
    require(out[i] < num_classes, path.string(), ": label ", out[i], " at index ", i, " is outside [0, ",
            num_classes, ")");
  return out;
}

// Writes unsigned bytes as IDX (uncompressed), atomically.
inline void write_idx(const std::filesystem::path& path, const std::vector<index_t>& dims,
                      const std::vector<std::uint8_t>& data) {
  require(!dims.empty() && dims.size() <= 4, path.string(), ": IDX rank must be 1 to 4, got ", dims.size());
  index_t n = 1;
  for (auto d : dims) {
    require(d >= 0 && d <= index_t{0xFFFFFFFF}, path.string(), ": IDX extent ", d, " does not fit 32 bits");
    n *= d;
  }
  require(static_cast<index_t>(data.size()) == n, path.string(), ": ", data.size(), " bytes for IDX shape of ", n,
          " elements");
  std::vector<std::uint8_t> header{0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) header.push_back(static_cast<std::uint8_t>((static_cast<std::uint64_t>(d) >> s) & 0xFF));
  write_file_atomically(path, [&](std::ostream& out) {
    write_bytes(out, header.data(), header.size());
    write_bytes(out, data.data(), data.size());
  });
}

// Float images in [-1, 1], [N, 1, H, W] or [N, H, W], as IDX3 bytes.
template <Scalar T>
void write_idx_images(const std::filesystem::path& path, ConstTensorView<T> images) {
  require(images.rank() == 3 || (images.rank() == 4 && images.dim(1) == 1), path.string(),
          ": expected images [N, 1, H, W] or [N, H, W], got ", images.shape().str());
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(images.numel()));
  for (index_t i = 0; i < images.numel(); ++i) {
    const double v = (static_cast<double>(images[i]) + 1.0) * 127.5;
    bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
  }
  write_idx(path, {images.dim(0), images.dim(-2), images.dim(-1)}, bytes);
}

}  // namespace ddpm::io
