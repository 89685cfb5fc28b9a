// libFuzzer target: io::load_image through a scratch file. The first byte
// picks 1 or 3 channels. stb_image is compiled into this target (from the
// same Debian header the library links) so the decoders are instrumented
// and guide the fuzzer; the prebuilt libstb would be opaque to it.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <cstdint>

// Two checks are off inside stb's own functions, for arithmetic stb_image
// 2.27 (Debian's libstb) does on corrupt JPEG data, both fixed upstream in
// 2.28 and both affecting only decoded values, never an index or a size:
// * shift-exponent: the JPEG bit buffer is shifted by 32 or more when corrupt
//   entropy-coded data runs out mid-code (code_bits goes negative; 2.28
//   stops at 0). Huffman lookups mask to 9 bits and extend_receive's n is
//   checked <= 15, so such a file decodes to garbage like any corrupt stream
//   stb pads with zeros. Regression input: corpus/image/regress_jpeg_code_bits.jpg.
// * signed-integer-overflow: a block's DC coefficient (the running sum of
//   corrupt differences) or an AC coefficient times a 16-bit quantisation
//   value overflows int before it is stored as a short coefficient (2.28
//   refuses such products). Regression input: corpus/image/regress_jpeg_dequant_overflow.jpg.
// Sizes and offsets stb computes are checked by it before use, and
// AddressSanitizer stays on everywhere, so a wrong size would still be caught
// as the out-of-bounds access it leads to; every check stays on in ddpm's code.
#pragma clang attribute push(__attribute__((no_sanitize("shift-exponent", "signed-integer-overflow"))), apply_to = function)
#include <stb_image.h>
#pragma clang attribute pop
#undef STB_IMAGE_IMPLEMENTATION  // compiled above; image.hpp's include then only declares

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
