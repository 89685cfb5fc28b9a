// libFuzzer target: a diffusers pipeline model_index.json (JSON text, Python's
// NaN/Infinity literals allowed) through io::parse_model_index and the latent
// pipelines' check (io::check_latent_pipeline_index). What the reader accepts
// must survive a round trip through model_index_to_json and through the text
// dump_model_index writes; an error must be one line.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ddpm/io/model_index.hpp"
#include "ddpm/io/pipeline.hpp"

namespace {
void one_line(const ddpm::Error& e) {
  for (const char* p = e.what(); *p; ++p)
    if (*p == '\n') std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ddpm;
  nlohmann::json j;
  try {
    j = io::parse_python_json(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/model_index.json");
  } catch (const Error&) {
    return 0;
  }
  io::ModelIndex m;
  try {
    m = io::parse_model_index(j, "fuzz/model_index.json");
  } catch (const Error& e) {
    one_line(e);
    return 0;
  }
  // Compared as text: a NaN argument is not equal to itself, and JSON text
  // has no NaN or infinity (dump writes null for them).
  const std::string text = io::dump_model_index(m);
  if (io::dump_model_index(io::parse_model_index(io::model_index_to_json(m), "round-trip")) != text) std::abort();
  const io::ModelIndex again = io::parse_model_index(io::parse_python_json(text, "dump"), "dump");
  if (again.class_name != m.class_name || again.components != m.components || io::dump_model_index(again) != text)
    std::abort();
  try {
    const LatentPipelineKind kind = io::check_latent_pipeline_index(m, "fuzz/model_index.json");
    if (m.class_name != pipeline_class_name(kind)) std::abort();
  } catch (const Error& e) {
    one_line(e);
  }
  return 0;
}
