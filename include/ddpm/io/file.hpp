#pragma once
// Whole-file reads, and writes that never leave a half-written file behind:
// data goes to a temporary name in the same folder, is flushed, and is then
// renamed over the target (rename is atomic within one file system), so the
// previous version stays intact until the new one is complete.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "ddpm/core/error.hpp"

namespace ddpm::io {

namespace fs = std::filesystem;

inline std::vector<char> read_file(const fs::path& path, std::size_t max_bytes = std::size_t{1} << 40) {
  std::error_code ec;
  require(fs::exists(path, ec), path.string(), ": file not found");
  require(fs::is_regular_file(path, ec), path.string(), ": not a regular file");
  const auto size = fs::file_size(path, ec);
  require(!ec, path.string(), ": cannot read size: ", ec.message());
  require(size <= max_bytes, path.string(), ": file is ", size, " bytes, more than the ", max_bytes, " allowed");
  std::ifstream in(path, std::ios::binary);
  require(in.good(), path.string(), ": cannot open for reading: ", std::strerror(errno));
  std::vector<char> bytes(static_cast<std::size_t>(size));
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  require(in.gcount() == static_cast<std::streamsize>(size), path.string(), ": short read (", in.gcount(), " of ",
          size, " bytes)");
  return bytes;
}

inline std::string read_text_file(const fs::path& path, std::size_t max_bytes = std::size_t{1} << 30) {
  auto bytes = read_file(path, max_bytes);
  return {bytes.begin(), bytes.end()};
}

// Test hook: when set, called with the number of bytes about to be written in
// each chunk; throwing from it simulates a failing disk part-way through a save.
inline std::function<void(std::size_t)>& write_fault_hook() {
  static std::function<void(std::size_t)> hook;
  return hook;
}

// Writes `produce(stream)`'s output to `path` atomically (temporary + rename).
template <class Producer>
void write_file_atomically(const fs::path& path, Producer&& produce) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  require(fs::is_directory(dir, ec), path.string(), ": folder ", dir.string(), " does not exist");
  std::random_device rd;
  std::string name = ".";  // hidden, and unique enough for concurrent writers
  name += path.filename().string();
  name += ".tmp";
  name += std::to_string(rd());
  const fs::path tmp = dir / name;
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      require(out.good(), tmp.string(), ": cannot open for writing: ", std::strerror(errno));
      produce(out);
      out.flush();
      require(out.good(), path.string(), ": write failed (disk full?)");
    }
    fs::rename(tmp, path, ec);
    require(!ec, path.string(), ": cannot rename temporary file into place: ", ec.message());
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
}

// Writes `n` bytes to `out`, in chunks, honouring the fault hook.
inline void write_bytes(std::ostream& out, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  while (n > 0) {
    const std::size_t k = n < kChunk ? n : kChunk;
    if (auto& hook = write_fault_hook()) hook(k);
    out.write(p, static_cast<std::streamsize>(k));
    p += k;
    n -= k;
  }
}

inline void write_text_file(const fs::path& path, const std::string& text) {
  write_file_atomically(path, [&](std::ostream& out) { write_bytes(out, text.data(), text.size()); });
}

}  // namespace ddpm::io
