#pragma once
// Shared by the libFuzzer targets: the readers that take a path get the input
// through a per-process scratch file (in /dev/shm when there is one).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace ddpm_fuzz {

inline std::filesystem::path scratch_file(const char* suffix) {
  std::error_code ec;
  const std::filesystem::path dir =
      std::filesystem::is_directory("/dev/shm", ec) ? std::filesystem::path("/dev/shm")
                                                   : std::filesystem::temp_directory_path();
  return dir / ("ddpm_fuzz_" + std::to_string(::getpid()) + suffix);
}

inline void write_scratch(const std::filesystem::path& p, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

}  // namespace ddpm_fuzz
