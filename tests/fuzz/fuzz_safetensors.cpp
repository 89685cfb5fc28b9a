// libFuzzer target: io::SafeTensors::from_bytes on arbitrary bytes, then every
// accessor on every tensor the header declares. Anything but a ddpm::Error is
// a finding (crash, sanitizer report, leak, timeout, out-of-memory).
#include <cstdint>
#include <cstring>
#include <vector>

#include "ddpm/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ddpm;
  try {
    const auto st = io::SafeTensors::from_bytes(std::vector<char>(data, data + size), "fuzz.safetensors");
    for (const auto& [name, ti] : st.tensors()) {
      // Validated offsets: the accessors must stay inside the buffer.
      if (ti.end - ti.begin != static_cast<std::size_t>(ti.numel()) * io::dtype_size(ti.dtype)) std::abort();
      const auto f = st.get<float>(name);
      const auto d = st.get<double>(name);
      if (f.numel() != ti.numel() || d.numel() != ti.numel()) std::abort();
      try {
        const auto v = st.get_int64(name);
        if (static_cast<index_t>(v.size()) != ti.numel()) std::abort();
      } catch (const Error&) {
      }
    }
    (void)st.metadata().size();
  } catch (const Error&) {
  }
  return 0;
}
