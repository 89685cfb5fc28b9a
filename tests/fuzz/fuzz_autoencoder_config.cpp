// libFuzzer target: a diffusers AutoencoderKL or VQModel config.json (JSON
// text, Python's NaN/Infinity literals allowed) through
// io::parse_autoencoder_kl_config and io::parse_vq_model_config; a config
// either accepts must survive a round trip through its *_to_json unchanged.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ddpm/io/autoencoder_config_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ddpm;
  nlohmann::json j;
  try {
    j = io::parse_python_json(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
  } catch (const Error&) {
    return 0;
  }
  try {
    const nn::AutoencoderKLConfig c = io::parse_autoencoder_kl_config(j, "fuzz/config.json");
    const nlohmann::json out = io::autoencoder_kl_config_to_json(c);
    if (io::autoencoder_kl_config_to_json(io::parse_autoencoder_kl_config(out, "round-trip")) != out) std::abort();
  } catch (const Error&) {
  }
  try {
    const nn::VQModelConfig c = io::parse_vq_model_config(j, "fuzz/config.json");
    const nlohmann::json out = io::vq_model_config_to_json(c);
    if (io::vq_model_config_to_json(io::parse_vq_model_config(out, "round-trip")) != out) std::abort();
  } catch (const Error&) {
  }
  try {
    (void)io::model_class_name(j, "fuzz/config.json");
  } catch (const Error&) {
  }
  return 0;
}
