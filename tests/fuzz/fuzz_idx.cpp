// libFuzzer target: io::read_idx (plain or gzip-compressed IDX) and the image
// and label loaders built on it, through a scratch file.
#include <cstdint>

#include "ddpm/io/idx.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ddpm;
  static const auto path = ddpm_fuzz::scratch_file(".idx");
  ddpm_fuzz::write_scratch(path, data, size);
  try {
    const io::IdxArray a = io::read_idx(path);
    if (a.data.size() != static_cast<std::size_t>(a.numel())) std::abort();
    if (a.dims.size() == 3) (void)io::load_idx_images<float>(path);
    if (a.dims.size() == 1) (void)io::load_idx_labels(path, 10);
  } catch (const Error&) {
  }
  return 0;
}
