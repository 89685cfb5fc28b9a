#pragma once
// Reading JSON as Python writes it. json.dumps emits the non-standard
// literals NaN, Infinity and -Infinity (diffusers' DPMSolver config holds
// lambda_min_clipped = -Infinity); nlohmann::json rejects them, so they are
// turned into the strings "NaN", "Infinity", "-Infinity" first, and readers
// that expect a number accept those strings.
#include <string>
#include <utility>
#include <vector>
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

// A JSON value for an error message: at most 80 characters, and never a
// recursive dump of a value nested deeper than 32 levels (a hostile file can
// nest hundreds of thousands deep; walking it recursively would overflow the
// stack). The depth check is iterative.
inline std::string describe_json(const nlohmann::json& v) {
  constexpr int kMaxDepth = 32;
  std::vector<std::pair<const nlohmann::json*, int>> todo{{&v, 0}};
  while (!todo.empty()) {
    const auto [p, depth] = todo.back();
    todo.pop_back();
    if (!p->is_structured()) continue;
    if (depth == kMaxDepth) return v.is_array() ? "[...] (nested too deep)" : "{...} (nested too deep)";
    for (const auto& e : *p) todo.emplace_back(&e, depth + 1);
  }
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

}  // namespace ddpm::io
