#pragma once
// Reading JSON as Python writes it. json.dumps emits the non-standard
// literals NaN, Infinity and -Infinity (diffusers' DPMSolver config holds
// lambda_min_clipped = -Infinity); nlohmann::json rejects them, so they are
// turned into the strings "NaN", "Infinity", "-Infinity" first, and readers
// that expect a number accept those strings.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ddpm/core/error.hpp"

namespace ddpm::io {

// JSON with Python's non-standard number literals (NaN, Infinity, -Infinity,
// as json.dumps writes them) turned into the strings "NaN", "Infinity",
// "-Infinity" before parsing; read_scheduler_config accepts those strings for numbers.
inline nlohmann::json parse_python_json(std::string_view text, const std::string& origin = "<json>") {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (std::string_view lit : {"-Infinity", "Infinity", "NaN"}) {
      if (text.substr(i, lit.size()) == lit) {
        out += '"';
        out += lit;
        out += '"';
        i += lit.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  try {
    return nlohmann::json::parse(out);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, ": invalid JSON: ", e.what());
  }
}

}  // namespace ddpm::io
