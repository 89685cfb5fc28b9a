// libFuzzer target: a diffusers UNet2DModel config.json (JSON text) through
// io::parse_unet2d_config; a config it accepts must survive a round trip
// through unet2d_config_to_json unchanged.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/io/unet_config_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ddpm;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;  // read_unet2d_config turns this into a ddpm::Error naming the file
  }
  try {
    std::vector<std::string> ignored;
    const nn::UNet2DConfig c = io::parse_unet2d_config(j, "fuzz/config.json", &ignored);
    const nlohmann::json out = io::unet2d_config_to_json(c);
    const nn::UNet2DConfig back = io::parse_unet2d_config(out, "round-trip");
    if (io::unet2d_config_to_json(back) != out) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
