// libFuzzer target: io::load_image through a scratch file. The first byte
// picks 1 or 3 channels. stb_image is compiled into this target (from the
// same Debian header the library links) so the decoders are instrumented
// and guide the fuzzer; the prebuilt libstb would be opaque to it.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <cstdint>

#include "ddpm/io/image.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ddpm;
  if (size < 1) return 0;
  const int channels = (data[0] & 1) ? 3 : 1;
  static const auto path = ddpm_fuzz::scratch_file(".img");
  ddpm_fuzz::write_scratch(path, data + 1, size - 1);
  try {
    const io::Image img = io::load_image(path, channels);
    if (img.pixels.size() != static_cast<std::size_t>(img.width) * img.height * channels) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
